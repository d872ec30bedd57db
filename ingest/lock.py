"""One writer at a time: an advisory lock file beside the store.

The operating system releases the lock when the process ends, even on kill -9, so a crashed
ingest never leaves a stale lock behind.
"""

from __future__ import annotations

import errno
import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rag.errors import IngestLockedError, StoreError
from rag.store import WRITER_LOCK, writer_note


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
