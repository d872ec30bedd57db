"""What the page and the API share between sessions and requests: the store reader, the embedder, the model,
the accounts. What one person may do with them goes through their :class:`~service.reader.Reader`.

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

from ingest.page_view import PageCache
from ingest.pipeline import IngestReport, ProgressListener, ingest_paths, sync_collections
from rag.accounts import AccessError, Accounts, Person
from rag.answering.answer import Answerer, AskOptions, Searcher, build_answerer
from rag.answering.conversations import ConversationStore
from rag.answering.summary import Summarizer, SummaryCache, summary_cache
from rag.audit import AuditLog, NoAudit
from rag.errors import SourcierError
from rag.llm.base import ChatModel
from rag.machine import available_memory
from rag.search.cards import DocumentCard
from rag.search.corpus import DocumentInfo, documents_in
from rag.search.scope import Scope
from rag.served import SERVICE, store_fingerprint
from rag.settings import Settings
from service.background import BackgroundSummaries
from service.reader import Reader


@dataclass
class SessionChoices:
    """What one conversation may change for itself (the sidebar): the answer's options and the model file."""

    k: int
    temperature: float
    max_tokens: int
    system_prompt: str | None
    model_path: Path | None

    def options(self) -> AskOptions:
        return AskOptions(self.k, self.temperature, self.max_tokens, self.system_prompt or None)


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
        self.page_cache = PageCache(Path(settings.paths.store_dir) / "page-views")
        self._summaries: SummaryCache | None = None
        self._summaries_lock = threading.Lock()
        self._accounts: Accounts | None = None
        self._accounts_lock = threading.Lock()
        self.audit = AuditLog.of_store(settings.paths.store_dir) if settings.server.audit else NoAudit()
        self._conversations: ConversationStore | None = None
        self._conversations_lock = threading.Lock()
        self.background: BackgroundSummaries | None = None  # ingest.summaries (start_background_summaries)

    def defaults(self) -> SessionChoices:
        s = self.settings
        return SessionChoices(s.retrieval.k, s.llm.temperature, s.llm.max_tokens, s.llm.system_prompt, None)

    def model(self, path: Path | None = None, background: bool = False) -> ChatModel:
        """The model of that file (the configured one when None), loaded once and shared. A request for it
        stops the summary being made in the background, if any (``background``: that work asking).

        Choosing another file does not unload the configured model for everyone: up to ``llm.extra_models``
        other files stay loaded beside it (each with its own queue), the least recently used unloaded first
        (a conversation still answering with it keeps it until its answer ends). A file that would not fit in
        the memory available is refused before anything is unloaded or loaded."""
        if not background and self.background is not None:
            self.background.requested()
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

    def loaded_model(self, path: Path | None = None) -> ChatModel | None:
        """That model if it is loaded (nothing is loaded for asking)."""
        return self._models.get(path)

    def start_background_summaries(self) -> BackgroundSummaries | None:
        """``ingest.summaries``: documents summarised while the model is idle (:mod:`service.background`); not
        when the summaries cannot be kept (they would be made again and again)."""
        if self.background is None and self.summaries is not None:
            self.background = BackgroundSummaries(self, self.settings.ingest.summaries_idle_s).start()
        return self.background

    def stop_background(self) -> None:
        if self.background is not None:
            self.background.stop()

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

    def answerer(self, choices: SessionChoices, limit: Scope | None = None) -> Answerer:
        """An answerer with a conversation's choices, every search held to ``limit`` (what its asker reads)."""
        model = self.model(choices.model_path)
        return build_answerer(self.settings, model, self.retriever, limit, self.summaries, choices.options())

    @property
    def summaries(self) -> SummaryCache:
        """Where summaries are kept (``rag.answering.summary``), opened on first use; shared by every request."""
        with self._summaries_lock:
            if self._summaries is None:
                self._summaries = summary_cache(self.settings.paths.store_dir)
            return self._summaries

    def summarizer(self, background: bool = False) -> Summarizer:
        """Summaries and comparisons with the configured model (loaded now if it is not); ``background``: for
        the summaries made while the model is idle (others stop those)."""
        return Summarizer(self.model(background=background), self.retriever.corpus, self.summaries)

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

    def cards(self, scope: Scope | None = None) -> list[DocumentCard]:
        """The cards of the documents ``scope`` admits (``rag.search.cards``: what questions are routed by)."""
        return self.retriever.cards.cards(self.retriever.corpus, scope)

    def set_card(self, root: str, source: str, values: dict[str, Any]) -> None:
        """Keep a correction of one document's card (kept when it is ingested again)."""
        self.retriever.cards.set_fields(root, source, values)

    # -- conversations ------------------------------------------------------------------------------

    @property
    def conversations(self) -> ConversationStore:
        """The saved conversations (opened on first use)."""
        with self._conversations_lock:
            if self._conversations is None:
                self._conversations = ConversationStore(self.settings.paths.conversations_file())
            return self._conversations

    def ingest(
        self, paths: Sequence[Path], progress: ProgressListener | None = None, under: Path | None = None
    ) -> IngestReport:
        """The same pipeline as ``python -m ingest``, on the given files (one-writer lock included); files in
        ``under`` are named from it."""
        return ingest_paths(list(paths), self.settings, progress=progress, under=under)

    # -- people -----------------------------------------------------------------------------------------

    def accounts(self) -> Accounts | None:
        """The store's accounts, or None while it has none (an install for one person: no login)."""
        with self._accounts_lock:
            if self._accounts is None:
                self._accounts = Accounts.existing(self.settings.paths.store_dir)
            return self._accounts if self._accounts is not None and self._accounts.configured() else None

    def login(self, name: str, password: str, address: str) -> Person:
        """A page login (``Accounts.login``: rate-limited, locked out after repeated failures), kept in the
        audit trail whether it succeeds or not."""
        accounts = self.accounts()
        if accounts is None:
            raise AccessError("this install has no accounts: there is nothing to log in to")
        try:
            person = accounts.login(name, password, address)
        except AccessError as exc:
            self.audit.record("login refused", None, name=name, address=address, reason=str(exc))
            raise
        self.audit.record("login", person.name, address=address)
        return person

    def collections_changed(self) -> int:
        """After a change to the collections (the admin panel): the stored chunks made to carry the collections
        holding their files (metadata only, under the ingest lock). Returns the chunks changed."""
        return sync_collections(self.settings, wait=True)

    def reader(self, person: Person | None) -> Reader:
        """The service as ``person`` sees it (None: the install's owner, only while there are no accounts)."""
        accounts = self.accounts()
        if accounts is None:
            return Reader(self, None, None)
        if person is None:
            raise AccessError("log in first: this install has accounts")
        person = accounts.person(person.name)  # as the file says now (removed, or another role, since)
        return Reader(self, person, accounts.scope_for(person))


def _model_memory(path: Path | None) -> int | None:
    """About what a loaded GGUF takes: its file (mapped weights) plus a quarter for the context and buffers."""
    try:
        return int(path.stat().st_size * 1.25) if path is not None else None
    except OSError:
        return None


def build_service(settings: Settings) -> Service:
    """The real service: the configured store and embedder; the model loads on the first question."""
    from rag.llm import load_llm
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.rerank import load_reranker
    from rag.search.retrieval import LiveRetriever

    info = embedding_model_info(settings)
    retriever = LiveRetriever(settings, load_embedder(settings, info), info, load_reranker(settings))
    service = Service(settings, retriever, lambda path: load_llm(settings, path))
    if settings.ingest.summaries:
        service.start_background_summaries()
    return service
