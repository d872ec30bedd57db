"""One writer at a time: an advisory lock file beside the store, and who holds it.

The operating system releases the lock when the process ends, even on kill -9, so a crashed
ingest never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import IngestLockedError, StoreError

WRITER_LOCK = ".sourcier-ingest.lock"  # beside the store


@contextmanager
def ingest_lock(folder: Path, wait: bool = False) -> Iterator[None]:
    """Hold the ingest lock of ``folder``; raise IngestLockedError if taken (unless ``wait``)."""
    path = folder / WRITER_LOCK
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        reason = "the store folder is read-only" if exc.errno in (errno.EROFS, errno.EACCES) else exc.strerror
        raise StoreError(
            f"cannot write to the store folder {folder}: {reason or exc}; make it writable or point "
            f"paths.store_dir elsewhere (nothing was changed)"
        ) from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
            raise IngestLockedError(
                f"another ingest is already writing to {folder} ({holder}); "
                f"wait for it to finish or run again with --wait"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, writer_note(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def writer_note(pid: int) -> str:
    """What the ingest lock file says of its holder (shown to a refused ingest, read by
    :func:`ingest_in_this_process`)."""
    return f"{_holder_prefix(pid)}started {time.strftime('%Y-%m-%d %H:%M:%S')}"


def _holder_prefix(pid: int) -> str:
    return f"pid {pid}, "


def ingest_in_this_process(store_dir: Path) -> bool:
    """Whether an ingest of this very process holds the store's one-writer lock (the lock file names its
    holder's pid). An ingest in another process never uses this process's Chroma systems."""
    path = store_dir / WRITER_LOCK
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:  # held: by whom?
            return os.pread(fd, 200, 0).decode(errors="replace").startswith(_holder_prefix(os.getpid()))
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
