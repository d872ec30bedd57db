"""What the page and the API share between sessions and requests: the store reader, the embedder, the model.

Built once per server process (``st.cache_resource`` in the page, once in the API) and safe across sessions: the
retriever follows the store as ingests change it, the model generates one answer at a time (its own
lock) and is loaded once, under a lock, when a first question needs it. Everything the page does goes
through here to functions of ``rag`` and ``ingest``; tests build one with fakes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.discover import SUPPORTED_SUFFIXES
from ingest.page_view import PAGE_KINDS, PageCache, PageView
from ingest.pipeline import IngestReport, ProgressListener, document_path, ingest_paths
from ingest.uploads import SavedUpload, remove_document, save_upload, set_aside, withdraw
from rag.answer import Answer, Answerer, Searcher
from rag.conversations import ConversationStore
from rag.corpus import DocumentInfo, documents_in
from rag.errors import IngestLockedError, SourcierError
from rag.llm.base import ChatModel
from rag.packing import Passage
from rag.scope import Scope, resolve_scope
from rag.served import SERVICE, store_fingerprint
from rag.settings import Settings, available_memory


@dataclass
class SessionChoices:
    """What one conversation may change for itself (the sidebar)."""

    k: int
    temperature: float
    max_tokens: int
    system_prompt: str | None
    model_path: Path | None


class Service:
    def __init__(
        self,
        settings: Settings,
        retriever: Searcher,
        load_model: Callable[[Path | None], ChatModel],
    ) -> None:
        self.settings = settings
        self.retriever = retriever
        self._load_model = load_model
        self._models: OrderedDict[Path | None, ChatModel] = OrderedDict()  # least recently used first
        self._model_lock = threading.Lock()
        self._documents: tuple[str, list[DocumentInfo]] | None = None  # (store version, its documents)
        self._documents_lock = threading.Lock()
        self._page_cache = PageCache(Path(settings.paths.store_dir) / "page-views")
        self._conversations: ConversationStore | None = None
        self._conversations_lock = threading.Lock()

    def defaults(self) -> SessionChoices:
        s = self.settings
        return SessionChoices(s.retrieval.k, s.llm.temperature, s.llm.max_tokens, s.llm.system_prompt, None)

    def model(self, path: Path | None = None) -> ChatModel:
        """The model of that file (the configured one when None), loaded once and shared.

        Choosing another file does not unload the configured model for everyone: up to ``llm.extra_models``
        other files stay loaded beside it (each with its own queue), the least recently used unloaded first
        (a conversation still answering with it keeps it until its answer ends). A file that would not fit in
        the memory available is refused before anything is unloaded or loaded."""
        with self._model_lock:
            if path in self._models:
                self._models.move_to_end(path)
                return self._models[path]
            if path is not None:
                self._make_room_for(path)
            self._models[path] = self._load_model(path)
            return self._models[path]

    def _make_room_for(self, path: Path) -> None:
        limit = self.settings.llm.extra_models
        if limit == 0:
            raise SourcierError(
                f"{path.name}: this service answers with its configured model only (llm.extra_models = 0)"
            )
        extras = [p for p in self._models if p is not None]
        evicted = extras[: max(0, len(extras) - limit + 1)]
        needed = _model_memory(path)
        available = available_memory()
        freed = sum(_model_memory(p) or 0 for p in evicted)
        if needed is not None and available is not None and needed > available + freed:
            raise SourcierError(
                f"{path.name}: not enough memory to load this model beside the ones in use (needs about "
                f"{needed / 2**30:.1f} GiB, {(available + freed) / 2**30:.1f} GiB available): choose a smaller "
                "model or ask with the default one"
            )
        for p in evicted:
            del self._models[p]

    def model_loaded(self, path: Path | None = None) -> bool:
        return path in self._models

    def health(self) -> dict[str, Any]:
        """The model's state for a health check: ``status`` "ok", or "unhealthy" when a generation has held
        the model for longer than ``llm.timeout_s`` without producing anything (a wedged process, which an
        orchestrator should restart)."""
        limit = self.settings.llm.timeout_s
        models = list(self._models.values())
        # which store this is, for a `sourcier ask` on this machine to use this server (rag.served)
        served = {"service": SERVICE, "store": store_fingerprint(self.settings.paths.store_dir)}
        if not models:
            return {"status": "ok", "model": {"loaded": False, "busy": False}, "stall_limit_s": limit, **served}
        # The model that has gone longest without progress speaks for all (a wedged one must be seen).
        state = max((m.activity.state() for m in models), key=lambda st: st.quiet_s or -1.0)
        report: dict[str, Any] = {
            "status": "ok",
            "model": {"loaded": True, **state.as_dict()},
            "stall_limit_s": limit,
            **served,
        }
        process = self._models[None].process_state() if None in self._models else None
        if process is not None:  # its worker: restarts and the last crash, if any
            report["model"]["process"] = process
            if process["state"] == "restart failed":
                report["status"] = "unhealthy"
                report["reason"] = f"the model process could not be started again: {process.get('error', '')}"
        if state.quiet_s is not None and state.quiet_s > limit:
            report["status"] = "unhealthy"
            report["reason"] = (
                f"a generation has held the model for {state.busy_s:.0f} s and produced nothing for "
                f"{state.quiet_s:.0f} s (llm.timeout_s = {limit:g} s)"
            )
        return report

    def answerer(self, choices: SessionChoices) -> Answerer:
        settings = self.settings.model_copy(deep=True)
        settings.retrieval.k = choices.k
        settings.llm.temperature = choices.temperature
        settings.llm.max_tokens = choices.max_tokens
        settings.llm.system_prompt = choices.system_prompt or None
        return Answerer(settings, self.retriever, self.model(choices.model_path))

    def model_files(self) -> list[Path]:
        """GGUF files in the models folder, for the sidebar's choice (none with an LLM server: it serves its own)."""
        if self.settings.llm.backend == "server":
            return []
        folder = self.settings.paths.model_dir
        return sorted(folder.glob("*.gguf")) if folder.is_dir() else []

    # -- documents ----------------------------------------------------------------------------------

    def documents(self, scope: Scope | None = None) -> list[DocumentInfo]:
        """The store's documents (those ``scope`` admits), read once per store version (reading them goes
        through every chunk's metadata: seconds at tens of thousands of chunks, too slow for every rerun of the
        page). Any write, by this process or another, changes the version, and the next call reads them again."""
        corpus = self.retriever.corpus
        with self._documents_lock:
            version = corpus.version()
            if self._documents is None or self._documents[0] != version:
                self._documents = (version, corpus.documents())
            return documents_in(self._documents[1], scope)

    # -- conversations ------------------------------------------------------------------------------

    @property
    def conversations(self) -> ConversationStore:
        """The saved conversations (opened on first use)."""
        with self._conversations_lock:
            if self._conversations is None:
                self._conversations = ConversationStore(self.settings.paths.conversations_file())
            return self._conversations

    def save_answer(self, conversation_id: str | None, answer: Answer, scope: Sequence[str] = ()) -> str:
        """Keep a question and its answer in its conversation (a new one when None); returns the id."""
        if conversation_id is None:
            conversation_id = self.conversations.create(answer.question, scope)
        self.conversations.add(conversation_id, answer, scope)
        return conversation_id

    def source_states(self, answer: Answer) -> dict[int, str]:
        """For each source of a saved answer: "kept" (the store holds that passage as it was), "changed"
        (its document is there in another version) or "removed" (its document is no longer stored)."""
        held = self.retriever.corpus.records([s.passage.chunk_id for s in answer.sources])
        documents = {(d.root, d.source) for d in self.documents()}
        states = {}
        for s in answer.sources:
            p = s.passage
            states[s.number] = (
                "kept" if p.chunk_id in held else "changed" if (p.root, p.source) in documents else "removed"
            )
        return states

    def scope(self, names: Sequence[str]) -> Scope | None:
        """The documents that ``names`` (documents, folders, paths) select; None for none (all documents)."""
        return resolve_scope(self.documents(), names, self.settings.paths.store_dir)

    def file_of(self, doc: DocumentInfo) -> Path:
        return document_path(doc.root, doc.source, self.settings.paths.store_dir)

    # -- the cited page, shown ----------------------------------------------------------------------

    def has_page_images(self, source: str) -> bool:
        """Whether a document's pages can be shown as images (PDF and image files)."""
        return SUPPORTED_SUFFIXES.get(Path(source).suffix.lower()) in PAGE_KINDS

    def page_view(self, doc: DocumentInfo, page: int, passage: str | None = None) -> PageView:
        """Page ``page`` of a PDF or image document as a PNG, ``passage`` highlighted where it is on the page
        (cached on disk beside the store)."""
        kind = SUPPORTED_SUFFIXES.get(Path(doc.source).suffix.lower(), "")
        return self._page_cache.view(self.file_of(doc), kind, page, passage)

    def chunk(self, chunk_id: str) -> tuple[str, dict[str, Any]] | None:
        """A stored chunk's text and metadata, or None when the store has no such chunk."""
        return self.retriever.corpus.records([chunk_id]).get(chunk_id)

    def surroundings(self, passage: Passage, chars: int = 400) -> tuple[str, str]:
        """The text just before and after a passage in its document (from the neighbouring chunks, which share
        its page): for formats without page images, the passage is shown where it sits. ("", "") when gone."""
        found = self.chunk(passage.chunk_id)
        if found is None:
            return "", ""
        index = int(found[1].get("chunk_index", -1))
        near = self.retriever.corpus.neighbours(passage.root, passage.source, [index - 1, index + 1])
        before = after = ""
        if index - 1 in near and int(near[index - 1][1]["page"]) == passage.page:
            text, meta = near[index - 1]
            before = text[: max(0, passage.start - int(meta["start"]))][-chars:]
        if index + 1 in near and int(near[index + 1][1]["page"]) == passage.page:
            text, meta = near[index + 1]
            after = text[max(0, passage.end - int(meta["start"])) :][:chars]
        return before, after

    def save_uploads(self, files: Sequence[tuple[str, bytes]]) -> tuple[list[SavedUpload], list[tuple[str, str, str]]]:
        """Save uploaded (name, bytes) into the documents folder; returns the saved files and the refused ones
        as (name, reason, kind: "too_large", "not_a_document" or "refused")."""
        saved, refused = [], []
        for name, data in files:
            try:
                saved.append(save_upload(data, name, self.settings.paths.docs_dir, self.settings.server.upload_max_mb))
            except SourcierError as exc:
                refused.append((name, str(exc), getattr(exc, "kind", "refused")))
        return saved, refused

    def ingest(self, paths: Sequence[Path], progress: ProgressListener | None = None) -> IngestReport:
        """The same pipeline as ``python -m ingest``, on the given files (one-writer lock included)."""
        return ingest_paths(list(paths), self.settings, progress=progress)

    def ingest_uploads(
        self, saved: Sequence[SavedUpload], progress: ProgressListener | None = None
    ) -> tuple[IngestReport, dict[str, str]]:
        """Ingest what an upload saved, all or nothing per file: when another ingest holds the store the files
        just written are taken back (and the IngestLockedError raised); a file that fails is set aside in
        ``.failed/``. Returns the report and {file: where it was set aside}."""
        try:
            report = self.ingest([s.path for s in saved], progress)
        except IngestLockedError:
            withdraw(list(saved))
            raise
        return report, set_aside(list(saved), {Path(p.source).name for p in report.failed})

    def remove(self, doc: DocumentInfo) -> int:
        return remove_document(self.settings, doc.root, doc.source)


def _model_memory(path: Path | None) -> int | None:
    """About what a loaded GGUF takes: its file (mapped weights) plus a quarter for the context and buffers."""
    try:
        return int(path.stat().st_size * 1.25) if path is not None else None
    except OSError:
        return None


def build_service(settings: Settings) -> Service:
    """The real service: the configured store and embedder; the model loads on the first question."""
    from rag.embedding import embedding_model_info, load_embedder
    from rag.llm import load_llm
    from rag.rerank import load_reranker
    from rag.retrieval import LiveRetriever

    info = embedding_model_info(settings)
    retriever = LiveRetriever(settings, load_embedder(settings, info), info, load_reranker(settings))
    return Service(settings, retriever, lambda path: load_llm(settings, path))
