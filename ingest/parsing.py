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
from typing import TypeVar

from ingest.chunking import Chunk, context_headers, split_pages
from ingest.readers import read_document
from rag.embedding import EmbeddingModelInfo, TokenCounter, load_token_counter
from rag.errors import DocumentError

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


@dataclass(frozen=True)
class Parsed:
    """One file read and chunked: ``chunks[i]`` is searched with the context header ``headers[i]``."""

    pages: int
    chunks: list[Chunk]
    headers: list[str]


@dataclass(frozen=True)
class ParseFailure:
    """Why a file could not be read; ``expected`` is False for a parser bug or a dead worker."""

    reason: str
    expected: bool = True


def parse(job: ParseJob, counter: TokenCounter) -> Parsed | ParseFailure:
    """Read and chunk one file; every failure comes back as a :class:`ParseFailure`, never raised."""
    try:
        document = read_document(job.path, job.kind)
        chunks = split_pages(document.pages, counter, job.chunk_tokens, job.overlap_tokens)
        headers = context_headers(chunks, job.source, document.title, counter, job.context_tokens)
    except DocumentError as exc:
        return ParseFailure(str(exc))
    except Exception as exc:  # a parser bug must not stop the other files
        log.debug("unexpected error reading %s", job.path, exc_info=True)
        return ParseFailure(f"unexpected error while reading: {type(exc).__name__}: {exc}", expected=False)
    return Parsed(len(document.pages), chunks, headers)


# -- worker processes ---------------------------------------------------------------------------------

_worker_counter: TokenCounter | None = None


def _init_worker(info: EmbeddingModelInfo) -> None:
    global _worker_counter
    os.environ["TOKENIZERS_PARALLELISM"] = "false"  # one thread per worker: the workers are the parallelism
    _worker_counter = load_token_counter(info)


def _parse_in_worker(job: ParseJob) -> Parsed | ParseFailure:
    assert _worker_counter is not None, "worker not initialised"
    return parse(job, _worker_counter)


def parse_all(
    jobs: Iterable[T],
    to_job: Callable[[T], ParseJob],
    counter: Callable[[], TokenCounter],
    info: EmbeddingModelInfo,
    workers: int,
    worker: Callable[[ParseJob], Parsed | ParseFailure] | None = None,
) -> Iterator[tuple[T, Parsed | ParseFailure]]:
    """Each item with its parse result, in order; ``workers`` processes read ahead (0: in this process).

    At most ``2 * workers`` files are read ahead of the one being consumed, which bounds the memory
    held by chunks waiting for the embedder. ``worker`` replaces the function the workers run (tests
    make one crash); it must be importable by name, as the workers are started afresh.
    """
    items = list(jobs)
    if workers <= 0 or len(items) < 2:
        for item in items:
            yield item, parse(to_job(item), counter())
        return
    yield from _pooled(items, to_job, info, min(workers, len(items)), worker or _parse_in_worker)


def _pooled(
    items: list[T],
    to_job: Callable[[T], ParseJob],
    info: EmbeddingModelInfo,
    workers: int,
    worker: Callable[[ParseJob], Parsed | ParseFailure],
) -> Iterator[tuple[T, Parsed | ParseFailure]]:
    todo = deque(items)
    ahead: deque[tuple[T, Future]] = deque()
    pool = _new_pool(info, workers)
    try:
        while todo or ahead:
            while todo and len(ahead) < 2 * workers:
                item = todo.popleft()
                ahead.append((item, pool.submit(worker, to_job(item))))
            item, future = ahead.popleft()
            try:
                result = future.result()
            except BrokenProcessPool:
                # A worker died reading one of the files in flight, which one is unknown: this file is read
                # again alone, the others go back in line for a fresh pool. Each break settles one file.
                pool.shutdown(wait=False, cancel_futures=True)
                todo.extendleft(reversed([i for i, _ in ahead]))
                ahead.clear()
                result = _alone(to_job(item), info, worker)
                pool = _new_pool(info, workers)
            yield item, result
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _alone(
    job: ParseJob, info: EmbeddingModelInfo, worker: Callable[[ParseJob], Parsed | ParseFailure]
) -> Parsed | ParseFailure:
    """Parse one file in a worker of its own, so that a crash there is known to be its own."""
    with _new_pool(info, 1) as pool:
        try:
            return pool.submit(worker, job).result()
        except BrokenProcessPool:
            return ParseFailure(DIED, expected=False)


DIED = "the process reading this file died (a crash in the reader, or out of memory)"


def _new_pool(info: EmbeddingModelInfo, workers: int) -> ProcessPoolExecutor:
    # spawn, not fork: the parent holds Chroma's and onnxruntime's threads, which a fork would copy mid-lock
    return ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(info,),
    )
