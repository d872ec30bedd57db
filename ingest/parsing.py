"""Reading and chunking files, in this process or in worker processes.

pypdf is pure Python (about 110 ms a page of a financial filing), so threads cannot overlap it with the
embedding; processes can. The workers only read and chunk: the main process embeds and stays the only
writer of the store, so the lock, the crash safety and the incremental rules are those of a one-process
ingest. Results come back in the order the files were given (reports and progress read the same either
way); a worker that dies (a crash in a parser, the kernel's OOM killer) fails its file with that reason
and a new pool takes the rest.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from ingest.chunking import Chunk, context_headers, split_pages
from ingest.ocr import OcrOptions
from ingest.readers import read_document
from rag.embedding import Embedder, EmbeddingModelInfo, TokenCounter, load_embedder, load_token_counter
from rag.errors import DocumentError
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


@dataclass(frozen=True)
class ParseFailure:
    """Why a file could not be read."""

    reason: str


def parse(job: ParseJob, counter: TokenCounter) -> Parsed | ParseFailure:
    """Read and chunk one file; every failure comes back as a :class:`ParseFailure`, never raised."""
    try:
        document = read_document(job.path, job.kind, job.ocr)
        chunks = split_pages(document.pages, counter, job.chunk_tokens, job.overlap_tokens)
        headers = context_headers(chunks, job.source, document.title, counter, job.context_tokens)
    except DocumentError as exc:
        return ParseFailure(str(exc))
    except Exception as exc:  # a parser bug must not stop the other files
        log.debug("unexpected error reading %s", job.path, exc_info=True)
        return ParseFailure(f"unexpected error while reading: {type(exc).__name__}: {exc}")
    ocr_pages = tuple(p.number for p in document.pages if p.ocr)
    return Parsed(len(document.pages), chunks, headers, ocr_pages, document.ocr_seconds)


def parse_and_embed(job: ParseJob, counter: TokenCounter, embedder: Embedder) -> Embedded | ParseFailure:
    """Read, chunk and embed one file (each chunk as its context header, then its text)."""
    result = parse(job, counter)
    if isinstance(result, ParseFailure):
        return result
    texts = [search_text(c.text, h) for c, h in zip(result.chunks, result.headers, strict=True)]
    return Embedded(result, embedder.embed_documents(texts) if texts else [], getattr(embedder, "runtime", ""))


# -- worker processes ---------------------------------------------------------------------------------

_worker_counter: TokenCounter | None = None
_worker_embedder: Embedder | None = None


def _init_worker(info: EmbeddingModelInfo, settings_json: str | None, bulk: bool = False) -> None:
    global _worker_counter, _worker_embedder
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the workers are the parallelism
    _worker_counter = load_token_counter(info)
    if settings_json is not None:  # one_thread already
        _worker_embedder = load_embedder(Settings.model_validate_json(settings_json), info, bulk=bulk)


def _parse_in_worker(job: ParseJob) -> Parsed | Embedded | ParseFailure:
    assert _worker_counter is not None, "worker not initialised"
    if _worker_embedder is not None:
        return parse_and_embed(job, _worker_counter, _worker_embedder)
    return parse(job, _worker_counter)


def one_thread(settings: Settings) -> Settings:
    """The settings a worker loads its embedder with: one thread (the workers are the parallelism) and an
    absolute model folder (a worker's working directory may differ)."""
    s = settings.model_copy(deep=True)
    s.paths.model_dir = Path(settings.paths.model_dir).absolute()
    s.embedding.threads = 1
    return s


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
    that the workers load the embedder that is fastest once loaded (see ``rag.embedding.resolve_runtime``),
    not the one that is quickest to load. ``worker`` replaces
    the function the workers run (tests make one crash); it must be importable by name, as the workers
    are started afresh.
    """
    items = list(jobs)
    if workers <= 0 or len(items) < 2:
        for item in items:
            yield item, parse(to_job(item), counter())
        return
    settings_json = None if embed_with is None else one_thread(embed_with).model_dump_json()
    pool = _Pool(info, min(workers, len(items)), worker or _parse_in_worker, settings_json, bulk)
    yield from pool.results(items, to_job)


class _Pool:
    """Worker processes (spawned, not forked: the parent holds Chroma's and onnxruntime's threads, which a
    fork would copy mid-lock), replaced when one dies."""

    def __init__(
        self, info: EmbeddingModelInfo, workers: int, worker: Callable, settings_json: str | None, bulk: bool
    ) -> None:
        self.info, self.workers, self.worker, self.settings_json, self.bulk = info, workers, worker, settings_json, bulk

    def _new(self, workers: int) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(self.info, self.settings_json, self.bulk),
        )

    def results(self, items: list[T], to_job: Callable[[T], ParseJob]) -> Iterator[tuple[T, Any]]:
        todo = deque(items)
        ahead: deque[tuple[T, Future]] = deque()
        pool = self._new(self.workers)
        try:
            while todo or ahead:
                while todo and len(ahead) < 2 * self.workers:
                    item = todo.popleft()
                    ahead.append((item, pool.submit(self.worker, to_job(item))))
                item, future = ahead.popleft()
                try:
                    result = future.result()
                except BrokenProcessPool:
                    # A worker died on one of the files in flight, which one is unknown: this file is done
                    # again alone, the others go back in line for a fresh pool. Each break settles one file.
                    pool.shutdown(wait=False, cancel_futures=True)
                    todo.extendleft(reversed([i for i, _ in ahead]))
                    ahead.clear()
                    result = self._alone(to_job(item))
                    pool = self._new(self.workers)
                yield item, result
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _alone(self, job: ParseJob) -> Any:
        """One file in a worker of its own, so that a crash there is known to be its own."""
        with self._new(1) as pool:
            try:
                return pool.submit(self.worker, job).result()
            except BrokenProcessPool:
                return ParseFailure(DIED)


DIED = "the process reading this file died (a crash in the reader, or out of memory)"
