"""Incremental, crash-safe ingest of folders and files into the chunk store.

For each file the store holds at most the chunks of one version, recognised by ``file_hash``,
``pipeline`` and ``n_chunks`` in every chunk's metadata. A file is skipped when the store holds
exactly one complete copy of its current version; anything else (new, changed, or left half
written by a killed run) is redone, and redoing is idempotent:

1. read and chunk the file (nothing is written if this fails);
2. embed and upsert the chunks the store does not already hold (ids come from the document and each
   chunk's content, not its offsets: text that only moved keeps its id and its vector);
3. rewrite the metadata of the chunks it already held, then delete its stale chunks.

A run killed between any two writes leaves chunks whose metadata disagree with the file on disk,
so the next run redoes that file and ends in the same store as a clean ingest.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ingest.chunking import chunk_ids, chunk_metadata, pipeline_signature
from ingest.discover import Discovery, Problem, SourceFile, discover
from ingest.limits import read_limits
from ingest.ocr import OcrOptions
from ingest.workers import (
    Embedded,
    Parsed,
    ParseFailure,
    ParseJob,
    WorkerPlan,
    parse_all,
    plan_workers,
    pool_size,
)
from rag.accounts import collection_paths, holding
from rag.answering.summary import SUMMARIES_FILE, SummaryCache
from rag.errors import DocumentError, SettingsError
from rag.machine import available_memory
from rag.models.embedding import Embedder, EmbeddingModelInfo, TokenCounter
from rag.search.cards import card_store
from rag.search.hashing import file_sha256
from rag.search.names import absolute_path, document_path, resolve_root, root_key  # noqa: F401 (re-exported)
from rag.search.store import Store, StoredDocument
from rag.settings import Settings
from rag.text import search_text

log = logging.getLogger(__name__)


class ProgressListener:
    """Receives progress events; the CLI draws them, tests may record them. Default: ignore."""

    def planned(self, files: int, total_bytes: int) -> None: ...

    def file_chunked(self, source: str, pages: int, chunks: int, ocr_pages: int = 0) -> None: ...

    def chunks_embedded(self, count: int) -> None: ...

    def file_finished(self, source: str, nbytes: int) -> None: ...


@dataclass
class IngestReport:
    """What an ingest did (or, for a dry run, would do), file by file."""

    dry_run: bool = False
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    hidden: int = 0
    pages: int = 0
    ocr_pages: int = 0
    ocr_seconds: float = 0.0
    chunks_written: int = 0
    regranted: int = 0  # chunks whose collections changed (a collection made or changed since: rag.accounts)
    chunks_reused: int = 0
    chunks_removed: int = 0
    bytes_read: int = 0
    embed_seconds: float = 0.0
    elapsed_seconds: float = 0.0
    embedded_with: list[str] = field(default_factory=list)  # how the vectors were computed ('onnx on cpu')
    workers: int = 0  # worker processes that read (and embedded) the files; 0: all in this process
    notes: list[str] = field(default_factory=list)  # what the run decided by itself (fewer workers, ...)

    @property
    def ok(self) -> bool:
        """True when every document went in."""
        return not self.failed


@dataclass
class _Planned:
    file: SourceFile
    file_hash: str
    stored: StoredDocument | None


@dataclass
class _Job:
    """One file being written: its chunks, which need vectors, and how many are still pending."""

    planned: _Planned
    ids: list[str]
    texts: list[str]
    metadatas: list[dict]
    to_embed: list[int]
    pending: int = 0
    vectors: list[list[float]] | None = None  # every chunk's vector, when a cluster worker embedded the file
    multilingual: list[list[float]] | None = None  # and every chunk's multilingual one, when it made them

    def search_text(self, i: int) -> str:
        """What chunk ``i`` is embedded as: its context header, then its text."""
        return search_text(self.texts[i], self.metadatas[i].get("context", ""))


class Ingestor:
    """Runs ingests against one store; the embedder and tokenizer are loaded only when needed."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        model: EmbeddingModelInfo,
        counter_factory: Callable[[], TokenCounter],
        embedder_factory: Callable[[], Embedder],
        progress: ProgressListener | None = None,
        workers: int = 0,
        workers_embed: bool = False,
    ) -> None:
        chunking = settings.chunking
        if chunking.chunk_tokens > model.max_chunk_tokens:
            raise SettingsError(
                f"chunking.chunk_tokens={chunking.chunk_tokens} exceeds what the embedding model "
                f"{model.name} reads ({model.max_chunk_tokens} tokens): chunks would be truncated"
            )
        self.settings = settings
        self.store = store
        self.model = model
        # The header shares the embedding model's window with the chunk.
        self.context_tokens = min(chunking.context_tokens, model.max_chunk_tokens - chunking.chunk_tokens)
        self.pipeline = pipeline_signature(
            model.name, chunking.chunk_tokens, chunking.overlap_tokens, self.context_tokens
        )
        self._counter_factory = counter_factory
        self._embedder_factory = embedder_factory
        self._counter: TokenCounter | None = None
        self._embedder: Embedder | None = None
        self.progress = progress or ProgressListener()
        self.workers = workers  # processes reading files ahead of the embedder (0: read in this process)
        self.workers_embed = workers_embed  # they embed too (each with one thread); this process only writes
        self._collections: list[tuple[str, Path]] | None = None  # (collection id, its folder), read per run

    # -- public -------------------------------------------------------------------------------

    def run(
        self,
        targets: Sequence[Path],
        *,
        dry_run: bool = False,
        keep_missing: bool = False,
        under: Path | None = None,
    ) -> IngestReport:
        """Bring the store in line with ``targets`` (folders and/or files; files inside ``under`` are named
        from it, as an ingest of that folder names them)."""
        started = time.perf_counter()
        report = IngestReport(dry_run=dry_run)
        if not dry_run:  # a run killed mid-write left the keyword index a few ids off: back in step first
            self.store.reconcile_keywords()
            added, _ = self.store.reconcile_crosslingual()  # and for a store written before they existed
            if added:
                report.notes.append(f"{added} stored chunks given their multilingual vector (crosslingual search)")
        self._collections = collection_paths(self.settings.paths.store_dir)
        plans = [
            self._plan(found, report, keep_missing) for found in _by_root(discover(Path(t), under) for t in targets)
        ]
        todo = [p for plan in plans for p in plan[1]]
        self.progress.planned(len(todo), sum(p.file.size for p in todo))
        with self._cluster(bool(todo) and not dry_run):
            for root, to_write, stale_docs in plans:
                if dry_run:
                    self._describe_dry_run(to_write, stale_docs, report)
                else:
                    self._write(root, to_write, report)
                    self._remove(stale_docs, report)
        if not dry_run:
            report.regranted = self.sync_collections()
            self.write_cards()
        report.elapsed_seconds = time.perf_counter() - started
        return report

    def write_cards(self) -> None:
        """Each new or changed document's card written now (``rag.search.cards``; the first question would write it
        otherwise), and the cards of removed documents dropped. A failure only delays them to that question."""
        try:
            cards = card_store(self.settings.paths.store_dir)
            try:
                listed = cards.cards(self.store)
                cards.forget((c.root, c.source) for c in listed)
            finally:
                cards.close()
            summaries_file = self.settings.paths.store_dir / SUMMARIES_FILE
            if summaries_file.exists():  # what was summarised of a removed document goes with it
                summaries = SummaryCache(summaries_file)
                try:
                    summaries.forget((c.root, c.source) for c in listed)
                finally:
                    summaries.close()
        except (OSError, sqlite3.Error) as exc:
            log.warning("the documents' cards were not written (%s): the first question will write them", exc)

    def sync_collections(self) -> int:
        """Every stored document made to belong to exactly the collections holding its file (see
        :func:`apply_collections`); the collections are read again first."""
        self._collections = collection_paths(self.settings.paths.store_dir)
        return apply_collections(self.store, self.settings, self._collections)

    def forget(self, folder: Path) -> int:
        """Remove every chunk ingested from ``folder`` (e.g. a folder that was moved or deleted)."""
        folder = absolute_path(folder)
        names = {root_key(folder, self.settings.paths.store_dir), str(folder)}  # current and absolute naming
        ids = [cid for key in names for doc in self.store.stored_documents(key).values() for cid in doc.ids]
        self.store.delete(ids)
        return len(ids)

    @contextmanager
    def _cluster(self, needed: bool) -> Iterator[None]:
        """Joined to the Ray cluster while files go to it (never for a run with nothing to read)."""
        address = self.settings.ingest.ray_address
        if not (address and needed):
            yield
            return
        from ingest.distributed import connect

        leave = connect(address)
        try:
            yield
        finally:
            leave()

    # -- planning -----------------------------------------------------------------------------

    def _plan(
        self, found: Discovery, report: IngestReport, keep_missing: bool
    ) -> tuple[str, list[_Planned], list[StoredDocument]]:
        root = root_key(found.root, self.settings.paths.store_dir)
        report.skipped.extend(found.skipped)
        report.failed.extend(found.failed)
        report.hidden += found.hidden
        # a folder: every document it held (to find the deleted ones); files: only theirs (a watcher's batch
        # must not read the metadata of every chunk of a large folder)
        sources = None if found.scanned_folder else [f.source for f in found.files]
        stored = self.store.stored_documents(root, sources)
        to_write: list[_Planned] = []
        refused: list[str] = []
        for f in found.files:
            doc = stored.get(f.source)
            try:
                digest = self._checked_hash(f)
            except DocumentError as exc:
                reason = str(exc) + (" (the previously ingested version is kept)" if doc else "")
                report.failed.append(Problem(f.source, reason))
                refused.append(f.source)
                continue
            if doc is not None and doc.is_complete(digest, self.pipeline):
                report.unchanged.append(f.source)
            else:
                to_write.append(_Planned(f, digest, doc))
        present = {f.source for f in found.files} | {p.source for p in found.failed} | set(refused)
        stale = []
        if found.scanned_folder and not keep_missing:
            stale = [doc for source, doc in sorted(stored.items()) if source not in present]
        return root, to_write, stale

    def _checked_hash(self, f: SourceFile) -> str:
        """The file's content hash, or DocumentError when it is too large or unreadable."""
        limit_mb = self.settings.chunking.max_file_mb
        if f.size > limit_mb * 1024 * 1024:
            raise DocumentError(
                f"file is {f.size / 2**20:.1f} MB, above the limit of {limit_mb:g} MB (chunking.max_file_mb)"
            )
        try:
            return file_sha256(f.path)
        except OSError as exc:
            raise DocumentError(f"cannot read file: {exc.strerror or exc}") from None

    def _describe_dry_run(self, to_write: list[_Planned], stale: list[StoredDocument], report: IngestReport) -> None:
        for p in to_write:
            (report.added if p.stored is None else report.updated).append(p.file.source)
        for doc in stale:
            report.removed.append(doc.source)
            report.chunks_removed += len(doc.ids)

    # -- writing ------------------------------------------------------------------------------

    def _write(self, root: str, to_write: list[_Planned], report: IngestReport) -> None:
        queue: deque[tuple[_Job, int]] = deque()
        flush_at = self.settings.embedding.flush_chunks
        now = datetime.now(UTC).isoformat(timespec="seconds")
        # The embedders' settings: whether the workers also embed each chunk's multilingual vector is the store's
        # to say (not when the chunks' own embedder is the multilingual one).
        embedding = self.settings.model_copy(deep=True)
        embedding.retrieval.crosslingual_vectors = self.store.writes_crosslingual
        if self.settings.ingest.ray_address:
            from ingest.distributed import cluster_parse_embed

            parsed: Iterable[tuple[_Planned, Parsed | ParseFailure | Embedded]]
            parsed = cluster_parse_embed(to_write, self._parse_job, embedding)
        else:
            embed_with = embedding if self.workers_embed else None
            bulk = sum(p.file.size for p in to_write) >= self.settings.ingest.bulk_mb * 1024 * 1024
            plan = WorkerPlan(pool_size(self.workers, len(to_write)), bulk)
            if embed_with is not None:
                free = available_memory()
                plan = plan_workers(plan.workers, bulk, embedding, None if free is None else free // 2**20)
            if plan.note:
                log.info("ingest: %s", plan.note)
                report.notes.append(plan.note)
            report.workers = plan.workers
            parsed = parse_all(
                to_write,
                self._parse_job,
                lambda: self.counter,
                self.model,
                plan.workers,
                embed_with=embed_with,
                bulk=plan.bulk,
            )
        for planned, result in parsed:
            vectors = multilingual = None
            if isinstance(result, Embedded):
                _note_runtime(report, result.runtime)
                vectors, multilingual, result = result.vectors, result.multilingual, result.parsed
            job = self._prepare(root, planned, result, now, report)
            if job is None:
                continue
            job.vectors, job.multilingual = vectors, multilingual
            if not job.to_embed:
                self._finish(job, report)
                continue
            job.pending = len(job.to_embed)
            queue.extend((job, i) for i in job.to_embed)
            while len(queue) >= flush_at:
                self._flush(queue, flush_at, report)
        while queue:
            self._flush(queue, flush_at, report)

    def _parse_job(self, planned: _Planned) -> ParseJob:
        f = planned.file
        chunking, ingest = self.settings.chunking, self.settings.ingest
        ocr = OcrOptions(ingest.ocr, ingest.ocr_languages, ingest.ocr_min_chars, ingest.ocr_dpi)
        return ParseJob(
            f.path,
            f.kind,
            f.source,
            chunking.chunk_tokens,
            chunking.overlap_tokens,
            self.context_tokens,
            ocr,
            read_limits(ingest),
        )

    def _prepare(
        self, root: str, planned: _Planned, result: Parsed | ParseFailure, now: str, report: IngestReport
    ) -> _Job | None:
        """The chunks of one parsed file to write; on failure record why and leave the store untouched."""
        f = planned.file
        if isinstance(result, ParseFailure):
            report.failed.append(Problem(f.source, self._failure_reason(result.reason, planned)))
            self.progress.file_finished(f.source, f.size)
            return None
        chunks, headers = result.chunks, result.headers
        report.pages += result.pages
        report.ocr_pages += len(result.ocr_pages)
        report.ocr_seconds += result.ocr_seconds
        report.bytes_read += f.size
        self.progress.file_chunked(f.source, result.pages, len(chunks), len(result.ocr_pages))
        ids = chunk_ids(root, f.source, chunks, headers)
        metas = [
            chunk_metadata(
                root=root,
                source=f.source,
                kind=f.kind,
                file_hash=planned.file_hash,
                pipeline=self.pipeline,
                chunk=c,
                index=i,
                total=len(chunks),
                ingested_at=now,
                context=headers[i],
                ocr=c.page in result.ocr_pages,
                collections=holding(self._collections or [], f.path),
            )
            for i, c in enumerate(chunks)
        ]
        held = set(planned.stored.ids) if planned.stored else set()
        to_embed = [i for i, cid in enumerate(ids) if cid not in held]
        return _Job(planned, ids, [c.text for c in chunks], metas, to_embed)

    @staticmethod
    def _failure_reason(reason: str, planned: _Planned) -> str:
        if planned.stored is not None:
            return reason + " (the previously ingested version is kept)"
        return reason

    def _flush(self, queue: deque[tuple[_Job, int]], limit: int, report: IngestReport) -> None:
        """Embed up to ``limit`` queued chunks (across files), write them, finish complete files."""
        batch = [queue.popleft() for _ in range(min(limit, len(queue)))]
        missing = [(job, i) for job, i in batch if job.vectors is None]  # all, unless a cluster embedded them
        computed: Iterator[list[float]] = iter(())
        if missing:
            embedder = self.embedder  # loaded on first use, outside the timing
            t0 = time.perf_counter()
            computed = iter(embedder.embed_documents([job.search_text(i) for job, i in missing]))
            report.embed_seconds += time.perf_counter() - t0
            _note_runtime(report, getattr(embedder, "runtime", ""))
        vectors = [next(computed) if job.vectors is None else job.vectors[i] for job, i in batch]
        self.progress.chunks_embedded(len(batch))
        self.store.upsert(
            [job.ids[i] for job, i in batch],
            vectors,
            [job.texts[i] for job, i in batch],
            [job.metadatas[i] for job, i in batch],
            [None if job.multilingual is None else job.multilingual[i] for job, i in batch],
        )
        report.chunks_written += len(batch)
        for job, _ in batch:
            job.pending -= 1
            if job.pending == 0:
                self._finish(job, report)

    def _finish(self, job: _Job, report: IngestReport) -> None:
        """All new chunks are in: refresh the kept ones, drop the stale ones, record the outcome."""
        embedded = set(job.to_embed)
        kept = [i for i in range(len(job.ids)) if i not in embedded]
        if kept:
            # collections None: a kept chunk whose file left every collection loses the key (an update keeps
            # the keys it is not given)
            metadatas = [{"collections": None} | job.metadatas[i] for i in kept]
            self.store.update_metadatas([job.ids[i] for i in kept], metadatas)
            report.chunks_reused += len(kept)
        stored = job.planned.stored
        if stored is not None:
            stale = sorted(set(stored.ids) - set(job.ids))
            self.store.delete(stale)
            report.chunks_removed += len(stale)
        source = job.planned.file.source
        (report.added if stored is None else report.updated).append(source)
        self.progress.file_finished(source, job.planned.file.size)

    def _remove(self, stale: list[StoredDocument], report: IngestReport) -> None:
        for doc in stale:
            self.store.delete(doc.ids)
            report.removed.append(doc.source)
            report.chunks_removed += len(doc.ids)

    # -- lazy heavy objects -------------------------------------------------------------------

    @property
    def counter(self) -> TokenCounter:
        if self._counter is None:
            self._counter = self._counter_factory()
        return self._counter

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = self._embedder_factory()
        return self._embedder


def _by_root(found: Iterable[Discovery]) -> list[Discovery]:
    """Files given one by one under the same folder, as one target (planned with one read of the store, and
    embedded in shared batches); folders stay as they are."""
    merged: dict[Path, Discovery] = {}
    out: list[Discovery] = []
    for d in found:
        if d.scanned_folder:
            out.append(d)
            continue
        into = merged.get(d.root)
        if into is None:
            merged[d.root] = into = Discovery(root=d.root, scanned_folder=False)
            out.append(into)
        known = {f.source for f in into.files}
        into.files += [f for f in d.files if f.source not in known]
        into.skipped += d.skipped
        into.failed += d.failed
        into.hidden += d.hidden
    return out


def _note_runtime(report: IngestReport, runtime: str) -> None:
    if runtime and runtime not in report.embedded_with:
        report.embedded_with.append(runtime)


def build_ingestor(settings: Settings, progress: ProgressListener | None = None) -> Ingestor:
    """An Ingestor over the configured store and embedding model (models load lazily)."""
    from rag.models.embedding import embedder_kind, embedding_model_info, load_embedder, load_token_counter
    from rag.search.store import open_store

    info = embedding_model_info(settings)
    light = embedder_kind(settings).workers_embed(settings)
    store = open_store(settings, info)
    return Ingestor(
        settings,
        store,
        info,
        counter_factory=lambda: load_token_counter(info),
        embedder_factory=lambda: load_embedder(settings, info),
        progress=progress,
        workers=settings.ingest.parse_workers(),
        workers_embed=light,
    )


def ingest_paths(
    targets: Sequence[Path],
    settings: Settings,
    *,
    dry_run: bool = False,
    keep_missing: bool = False,
    wait: bool = False,
    progress: ProgressListener | None = None,
    under: Path | None = None,
) -> IngestReport:
    """Ingest folders/files into the configured store, holding the one-writer lock (files inside ``under``
    named from it)."""
    from rag.search.writer_lock import ingest_lock

    for t in targets:
        if not Path(t).exists():
            raise DocumentError(f"no such file or folder: {t}")
    with ingest_lock(settings.paths.store_dir, wait=wait):
        ingestor = build_ingestor(settings, progress)
        return ingestor.run(targets, dry_run=dry_run, keep_missing=keep_missing, under=under)


def apply_collections(store: Store, settings: Settings, held: list[tuple[str, Path]] | None) -> int:
    """Make every stored document belong to exactly the collections (``rag.accounts``; ``held``: their ids and
    folders, None when the store has no accounts file) holding its file: metadata only, nothing embedded
    again. Returns the chunks changed (none, and nothing read, without an accounts file)."""
    if held is None:
        return 0
    changed = 0
    for doc in store.documents():
        wanted = holding(held, document_path(doc.root, doc.source, settings.paths.store_dir))
        if sorted(doc.collections) != wanted:
            changed += store.set_collections(doc.root, doc.source, wanted)
    return changed


def sync_collections(settings: Settings, *, wait: bool = False) -> int:
    """After a change to the collections (``sourcier collections``): every stored document's chunks made to
    carry the collections holding its file, under the one-writer lock. Returns the chunks changed (0 before
    the first ingest)."""
    from rag.search.store import open_store, store_class
    from rag.search.writer_lock import ingest_lock

    if not store_class(settings).exists(settings):
        return 0
    with ingest_lock(settings.paths.store_dir, wait=wait):
        store = open_store(settings, None, create=False)
        return apply_collections(store, settings, collection_paths(settings.paths.store_dir))


def remove_files(paths: Sequence[Path], folder: Path, settings: Settings, *, wait: bool = False) -> dict[str, int]:
    """Remove the chunks of files (or of every file under folders) that were deleted or moved away from
    ``folder``, an ingested folder, under the one-writer lock. Returns {file: chunks removed} for those the store
    held."""
    from rag.search.names import readable_name
    from rag.search.store import open_store, store_class
    from rag.search.writer_lock import ingest_lock

    if not store_class(settings).exists(settings):
        return {}
    folder = absolute_path(folder)
    names = {readable_name(absolute_path(p).relative_to(folder).as_posix()): str(p) for p in paths}
    removed: dict[str, int] = {}
    with ingest_lock(settings.paths.store_dir, wait=wait):
        store = open_store(settings, None, create=False)
        for key in {root_key(folder, settings.paths.store_dir), str(folder)}:  # current and absolute naming
            for source, doc in store.stored_documents(key).items():
                gone = next((p for n, p in names.items() if source == n or source.startswith(n + "/")), None)
                if gone is not None:
                    store.delete(doc.ids)
                    removed[str(folder / source)] = len(doc.ids)
    return removed


def forget_folders(folders: Sequence[Path], settings: Settings, *, wait: bool = False) -> dict[str, int]:
    """Remove the chunks of folders that were moved or deleted; returns chunks removed per folder."""
    from rag.search.writer_lock import ingest_lock

    with ingest_lock(settings.paths.store_dir, wait=wait):
        ingestor = build_ingestor(settings)
        return {str(f): ingestor.forget(f) for f in folders}
