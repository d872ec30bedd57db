"""Folders kept in step with the store: ``python -m ingest ./docs --watch``.

The operating system tells a watchdog observer (inotify on Linux) of every file created, changed, moved or
deleted under the folders; nothing polls every file. A touched file is read once it has been quiet for
``quiet_s`` (no event, and its size and modification time unchanged): a file still being copied or saved
is not read half-written, and a burst of files becomes one batch. Its chunks are then written through the
ordinary pipeline, one file at a time as targets of one ingest (named from the watched folder, as a full
ingest names them; unchanged files cost a hash), and a deleted file's chunks removed; a moved file is a
deletion and an addition. Every write holds the ingest's one-writer lock (waiting behind another ingest).

Events can be lost (an overflowing queue, a folder on a network share that sends none, a watcher that was
not running): a full ingest of each folder runs at the start and every ``rescan_s`` as a safety net; it
reads only what changed and removes what disappeared.
"""

from __future__ import annotations

import atexit
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest.discover import SUPPORTED_SUFFIXES
from ingest.pipeline import IngestReport, ProgressListener, ingest_paths, remove_files
from rag.search.names import absolute_path
from rag.settings import Settings

log = logging.getLogger(__name__)

QUIET_S = 2.0
RESCAN_S = 600.0
TICK_S = 0.25
NICE = 10  # the priority a server's watcher runs at below its answers (start_watcher)


@dataclass
class Batch:
    """What one pass wrote: the report of the files read, and the files whose chunks were removed."""

    report: IngestReport | None = None
    removed: dict[str, int] = field(default_factory=dict)  # file -> chunks removed
    rescan: bool = False


class FolderWatch:
    """Keeps the store in step with ``folders`` until ``stop`` is set (see the module's docstring)."""

    def __init__(
        self,
        folders: Sequence[Path],
        settings: Settings,
        *,
        quiet_s: float = QUIET_S,
        rescan_s: float = RESCAN_S,
        progress: ProgressListener | None = None,
        on_batch: Callable[[Batch], None] | None = None,
        parent: int | None = None,
    ) -> None:
        self.folders = [absolute_path(Path(f)) for f in folders]
        for folder in self.folders:
            if not folder.is_dir():
                raise NotADirectoryError(f"--watch needs folders: {folder} is not one")
        self.settings = settings
        self.quiet_s, self.rescan_s = quiet_s, rescan_s
        self.progress = progress
        self.on_batch = on_batch or (lambda batch: None)
        self.parent = parent  # the server that started this watcher: stop when it is gone
        self._lock = threading.Lock()
        self._touched: dict[Path, float] = {}  # path -> time of its last event (monotonic)
        self._seen: dict[Path, tuple[int, int] | None] = {}  # path -> (size, mtime_ns) when last looked at
        self.batches = 0

    # -- events (the observer's thread) ------------------------------------------------------------------

    def touched(self, path: str | bytes) -> None:
        path = Path(path.decode() if isinstance(path, bytes) else path)
        with self._lock:
            self._touched[path] = time.monotonic()

    # -- the loop ---------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Watch until ``stop`` is set: a full ingest first, then each quiet batch, and a full one every
        ``rescan_s``."""
        from watchdog.observers import Observer

        observer = Observer()
        handler = _Handler(self)
        for folder in self.folders:
            observer.schedule(handler, str(folder), recursive=True)
        observer.start()  # before the first scan: what changes during it is seen after
        try:
            self._rescan()
            last_scan = time.monotonic()
            while not stop.wait(TICK_S):
                if self.parent is not None and os.getppid() != self.parent:
                    log.info("the process that started this watcher is gone: stopping")
                    return
                if time.monotonic() - last_scan >= self.rescan_s:
                    self._rescan()
                    last_scan = time.monotonic()
                ready = self._quiet_paths()
                if ready:
                    self._write(ready)
        finally:
            observer.stop()
            observer.join(timeout=10)

    def _rescan(self) -> None:
        report = ingest_paths(self.folders, self.settings, wait=True, progress=self.progress)
        self._finish(Batch(report=report, rescan=True))

    def _quiet_paths(self) -> list[Path]:
        """The touched paths quiet for ``quiet_s``: no event since, and (for a file) the same size and
        modification time as at the previous look (a copy that writes without events, or a clock jump)."""
        now = time.monotonic()
        with self._lock:
            due = [p for p, at in self._touched.items() if now - at >= self.quiet_s]
        ready = []
        for path in due:
            state = _state(path)
            if state is not None and self._seen.get(path, state) != state:
                self._seen[path] = state  # still changing: look again after another quiet period
                with self._lock:
                    self._touched[path] = now
                continue
            with self._lock:
                if self._touched.get(path, now) <= now - self.quiet_s:
                    del self._touched[path]
                    ready.append(path)
            self._seen.pop(path, None)
        return ready

    def _write(self, paths: list[Path]) -> None:
        batch = Batch()
        for folder in self.folders:
            files, gone = [], []
            for path in (p for p in paths if p.is_relative_to(folder)):
                if path.is_dir():  # a folder moved in, or created with its files: each file waits its own quiet
                    for inside in path.rglob("*"):  # time (one may still be being written)
                        if inside.is_file() and _wanted(inside, folder):
                            self.touched(str(inside))
                elif path.is_file():
                    files += [path] if _wanted(path, folder) else []
                else:
                    gone.append(path)
            files = sorted(set(files))
            if files:
                report = ingest_paths(files, self.settings, wait=True, progress=self.progress, under=folder)
                batch.report = _merged(batch.report, report)
            if gone:
                batch.removed.update(remove_files(gone, folder, self.settings, wait=True))
        self._finish(batch)

    def _finish(self, batch: Batch) -> None:
        self.batches += 1
        self.on_batch(batch)


class _Handler:
    """watchdog's event handler: every path an event names (both ends of a move) is touched."""

    def __init__(self, watch: FolderWatch) -> None:
        self.watch = watch

    def dispatch(self, event) -> None:  # noqa: ANN001 (watchdog's FileSystemEvent)
        if event.event_type in ("opened", "closed_no_write"):
            return
        if event.is_directory and event.event_type == "modified":  # a file in it changed: that file's own event
            return
        self.watch.touched(event.src_path)
        dest = getattr(event, "dest_path", "")
        if dest:
            self.watch.touched(dest)


def _state(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return (st.st_size, st.st_mtime_ns)


def _wanted(path: Path, folder: Path) -> bool:
    """A file the ingest of ``folder`` reads: a supported type, nothing hidden on its way (an editor's swap
    file, an upload being written, the documents folder's ``.removed/``)."""
    hidden = any(part.startswith(".") for part in path.relative_to(folder).parts)
    return path.suffix.lower() in SUPPORTED_SUFFIXES and not hidden


def _merged(a: IngestReport | None, b: IngestReport) -> IngestReport:
    if a is None:
        return b
    for name in ("added", "updated", "unchanged", "removed", "failed", "skipped"):
        getattr(a, name).extend(getattr(b, name))
    a.chunks_written += b.chunks_written
    return a


def start_watcher(settings: Settings, config: Path | None = None) -> subprocess.Popen | None:
    """For the page and the API: ``python -m ingest FOLDERS --watch`` over ``paths.watch`` in a process of its
    own, ``NICE`` steps below this one (embedding a burst must not slow the answers), ended with this process
    (at exit; and it stops by itself when this process is gone, even killed); None when ``paths.watch`` is
    empty."""
    folders = [str(absolute_path(Path(f))) for f in settings.paths.watch]
    if not folders:
        return None
    store = str(absolute_path(settings.paths.store_dir))
    command = [sys.executable, "-m", "ingest", *folders, "--watch", "--store", store, "--nice", str(NICE)]
    command += ["--parent", str(os.getpid())]
    if config is not None:
        command += ["--config", str(absolute_path(config))]
    proc = subprocess.Popen(command)
    atexit.register(stop_watcher, proc)
    log.info("watching %s (process %d)", ", ".join(folders), proc.pid)
    return proc


def stop_watcher(proc: subprocess.Popen | None, grace_s: float = 10.0) -> None:
    """End a watcher started by :func:`start_watcher` (SIGTERM: it finishes the file it is writing)."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
