"""The service as one person sees it: every read made on their behalf held to what they may read.

The page and the API get a :class:`Reader` for the person of each session or request (``Service.reader``)
and go through it for everything that touches documents: the document list, a question's scope, the
answerer (its searches held to the person's collections), a chunk or a page image by id, the text around a
passage, saved conversations (their own only), uploads and removals. What lies outside is "not found",
exactly as what does not exist: the same error, the same status. On an install without accounts the
reader is the install's owner, who reads everything (as before accounts existed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

from ingest.discover import SUPPORTED_SUFFIXES
from ingest.page_view import PAGE_KINDS, PageCache, PageView
from ingest.pipeline import IngestReport, ProgressListener, document_path
from ingest.uploads import SavedUpload, remove_document, save_upload, set_aside, withdraw
from rag.accounts import AccessError, Accounts, Collection, Person
from rag.answering.answer import Answer, Answerer, Searcher
from rag.answering.conversations import ConversationStore, OwnedConversations
from rag.answering.packing import Passage
from rag.answering.summary import Comparison, ProgressCallback, Summarizer, Summary
from rag.audit import AuditLog, sources_shown
from rag.errors import IngestLockedError, SourcierError
from rag.llm.turns import Cancellation
from rag.search.cards import DocumentCard
from rag.search.corpus import DocumentInfo, Record
from rag.search.names import absolute_path, resolve_root
from rag.search.scope import Scope, resolve_scope, within
from rag.settings import Settings


class Shared(Protocol):
    """What a reader uses of the service (``service.shared.Service``), shared by every person."""

    settings: Settings
    retriever: Searcher
    page_cache: PageCache
    audit: AuditLog

    @property
    def conversations(self) -> ConversationStore: ...

    def documents(self, scope: Scope | None = None) -> list[DocumentInfo]: ...

    def answerer(self, choices: Any, limit: Scope | None = None) -> Answerer: ...

    def cards(self, scope: Scope | None = None) -> list[DocumentCard]: ...

    def set_card(self, root: str, source: str, values: dict[str, Any]) -> None: ...

    def accounts(self) -> Accounts | None: ...

    def collections_changed(self) -> int: ...

    def defaults(self) -> Any: ...

    def model(self, path: Path | None = None) -> Any: ...

    def model_loaded(self, path: Path | None = None) -> bool: ...

    def model_files(self) -> list[Path]: ...

    def summarizer(self) -> Summarizer: ...

    def ingest(
        self, paths: Sequence[Path], progress: ProgressListener | None = None, under: Path | None = None
    ) -> IngestReport: ...


class NotReadable(SourcierError):
    """A document or chunk that does not exist, or that the reader may not read: one error for both."""


class Reader:
    def __init__(self, service: Shared, person: Person | None, readable: Scope | None) -> None:
        self.service = service
        self.person = person
        self.readable = readable  # None: everything (an admin, or an install without accounts)

    @property
    def name(self) -> str:
        """Whose conversations these are ('' on an install without accounts)."""
        return self.person.name if self.person is not None else ""

    @property
    def is_admin(self) -> bool:
        return self.person is None or self.person.is_admin

    # -- documents and questions ------------------------------------------------------------------------

    def documents(self) -> list[DocumentInfo]:
        return self.service.documents(self.readable)

    def cards(self) -> dict[tuple[str, str], DocumentCard]:
        """The cards of the documents this person reads, by (root, source)."""
        return {(c.root, c.source): c for c in self.service.cards(self.readable)}

    def set_card(self, source: str, root: str | None, values: dict[str, Any]) -> DocumentCard:
        """Correct a readable document's card (``rag.search.cards.EDITABLE`` fields; None or '' forgets one)."""
        doc = self.document(source, root)
        self.service.set_card(doc.root, doc.source, values)
        self.record("card", file=doc.source, root=doc.root, **{k: v for k, v in values.items() if v is not None})
        return self.cards()[(doc.root, doc.source)]

    def document(self, source: str, root: str | None = None) -> DocumentInfo:
        """The one readable document of that name (in folder ``root`` when given)."""
        matches = [d for d in self.documents() if d.source == source and (root is None or d.root == root)]
        if not matches:
            raise NotReadable(f"no document {source!r} in the store")
        if len(matches) > 1:
            raise SourcierError(f"{source!r} is in several folders: give its root")
        return matches[0]

    def collections(self) -> list[Collection]:
        """The collections this person reads (every one for an admin; none without accounts)."""
        accounts = self.service.accounts()
        if accounts is None:
            return []
        return accounts.collections() if self.person is None else accounts.readable(self.person)

    def scope(self, names: Sequence[str]) -> Scope | None:
        """What a question asked of ``names`` (documents, folders, paths, ``collection:NAME``; none: every
        document) may read."""
        readable = {c.name: c.id for c in self.collections()}
        chosen = resolve_scope(self.documents(), names, self.service.settings.paths.store_dir, readable)
        return within(chosen, self.readable)

    def record(self, event: str, **fields: Any) -> None:
        """Keep an event of this person's in the audit trail (``rag.audit``)."""
        self.service.audit.record(event, self.person.name if self.person is not None else None, **fields)

    def answered(self, answer: Answer, scope: Sequence[str] = (), conversation_id: str | None = None) -> None:
        """Keep a question, its scope and the sources it was shown in the audit trail."""
        self.record(
            "ask",
            question=answer.question,
            scope=list(scope),
            found=answer.found,
            cancelled=answer.cancelled,
            sources=sources_shown(answer),
            conversation=conversation_id,
        )

    def summarize(
        self,
        source: str,
        root: str | None = None,
        language: str | None = None,
        refresh: bool = False,
        cancel: Cancellation | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Summary:
        """A readable document's summary (``rag.answering.summary``), kept in the audit trail."""
        doc = self.document(source, root)
        summary = self.service.summarizer().summarize(doc, language, self.readable, cancel, on_progress, refresh)
        self.record("summarize", file=doc.source, root=doc.root, cached=summary.cached, cancelled=summary.cancelled)
        return summary

    def compare(
        self,
        first: tuple[str, str | None],
        second: tuple[str, str | None],
        language: str | None = None,
        cancel: Cancellation | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Comparison:
        """Two readable documents lined up topic by topic (``rag.answering.summary``), kept in the audit trail."""
        a, b = self.document(*first), self.document(*second)
        comparison = self.service.summarizer().compare(a, b, language, self.readable, cancel, on_progress)
        self.record("compare", files=[a.source, b.source], cancelled=comparison.cancelled)
        return comparison

    def answerer(self, choices: Any) -> Answerer:
        """An answerer with a conversation's choices (``SessionChoices``), held to what this person reads."""
        return self.service.answerer(choices, limit=self.readable)

    def chunk(self, chunk_id: str) -> Record | None:
        """A readable chunk's text and metadata, or None (no such chunk, or not readable)."""
        return self.service.retriever.corpus.records([chunk_id], self.readable).get(chunk_id)

    def surroundings(self, passage: Passage, chars: int = 400) -> tuple[str, str]:
        """The text just before and after a passage in its document (from the neighbouring chunks, which share
        its page): for formats without page images, the passage is shown where it sits. ("", "") when gone."""
        found = self.chunk(passage.chunk_id)
        if found is None:
            return "", ""
        self.record("open", file=passage.source, root=passage.root, page=passage.page, chunk_id=passage.chunk_id)
        index = int(found[1].get("chunk_index", -1))
        corpus = self.service.retriever.corpus
        near = corpus.neighbours(passage.root, passage.source, [index - 1, index + 1], self.readable)
        before = after = ""
        if index - 1 in near and int(near[index - 1][1]["page"]) == passage.page:
            text, meta = near[index - 1]
            before = text[: max(0, passage.start - int(meta["start"]))][-chars:]
        if index + 1 in near and int(near[index + 1][1]["page"]) == passage.page:
            text, meta = near[index + 1]
            after = text[max(0, passage.end - int(meta["start"])) :][:chars]
        return before, after

    # -- the cited page, shown ------------------------------------------------------------------------------

    def has_page_images(self, source: str) -> bool:
        """Whether a document's pages can be shown as images (PDF and image files)."""
        return SUPPORTED_SUFFIXES.get(Path(source).suffix.lower()) in PAGE_KINDS

    def page_view(self, root: str, source: str, page: int, passage: str | None = None) -> PageView:
        """Page ``page`` of a readable PDF or image document as a PNG, ``passage`` highlighted where it is on
        the page (cached on disk beside the store)."""
        doc = self.document(source, root)
        self.record("open", file=doc.source, root=doc.root, page=page)
        kind = SUPPORTED_SUFFIXES.get(Path(doc.source).suffix.lower(), "")
        return self.service.page_cache.view(self.file_of(doc), kind, page, passage)

    def file_of(self, doc: DocumentInfo) -> Path:
        """Where a readable document's file is on disk."""
        doc = self.document(doc.source, doc.root)
        return document_path(doc.root, doc.source, self.service.settings.paths.store_dir)

    # -- conversations ----------------------------------------------------------------------------------

    @property
    def conversations(self) -> OwnedConversations:
        """This person's saved conversations (another's is "not found")."""
        return self.service.conversations.of(self.name)

    def save_answer(self, conversation_id: str | None, answer: Answer, scope: Sequence[str] = ()) -> str:
        """Keep a question and its answer in its conversation (a new one when None); returns the id."""
        if conversation_id is None:
            conversation_id = self.conversations.create(answer.question, scope)
        self.conversations.add(conversation_id, answer, scope)
        return conversation_id

    def source_states(self, answer: Answer) -> dict[int, str]:
        """For each source of a saved answer: "kept" (the store holds that passage as it was), "changed"
        (its document is there in another version) or "removed" (its document is no longer stored, or this
        person may no longer read it)."""
        held = self.service.retriever.corpus.records([s.passage.chunk_id for s in answer.sources], self.readable)
        documents = {(d.root, d.source) for d in self.documents()}
        states = {}
        for s in answer.sources:
            p = s.passage
            states[s.number] = (
                "kept" if p.chunk_id in held else "changed" if (p.root, p.source) in documents else "removed"
            )
        return states

    # -- adding and removing documents ------------------------------------------------------------------

    def upload_folder(self, collection: str | None = None) -> Path:
        """Where this person's uploads are saved: the documents folder (an admin, or an install without
        accounts, naming no collection), or the first folder of a collection they may read."""
        if collection is None:
            if self.is_admin:
                return Path(self.service.settings.paths.docs_dir)
            raise AccessError("choose the collection the files go into")
        accounts = self.service.accounts()
        readable = accounts.readable(self.person) if accounts is not None and self.person is not None else []
        found = [c for c in readable if collection in (c.name, c.id)]
        folders = [p for c in found for p in c.paths if p.is_dir()]
        if not folders:
            raise AccessError(f"no collection {collection!r} with a folder you may add documents to")
        return folders[0]

    def save_uploads(
        self, files: Sequence[tuple[str, bytes]], collection: str | None = None
    ) -> tuple[list[SavedUpload], list[tuple[str, str, str]]]:
        """Save uploaded (name, bytes) into this person's upload folder; returns the saved files and the
        refused ones as (name, reason, kind: "too_large", "not_a_document" or "refused")."""
        folder = self.upload_folder(collection)
        saved, refused = [], []
        for name, data in files:
            try:
                saved.append(save_upload(data, name, folder, self.service.settings.server.upload_max_mb))
            except SourcierError as exc:
                refused.append((name, str(exc), getattr(exc, "kind", "refused")))
        return saved, refused

    def ingest_uploads(
        self, saved: Sequence[SavedUpload], progress: ProgressListener | None = None
    ) -> tuple[IngestReport, dict[str, str]]:
        """Ingest what an upload saved, all or nothing per file: when another ingest holds the store the files
        just written are taken back (and the IngestLockedError raised); a file that fails is set aside in
        ``.failed/``. Returns the report and {file: where it was set aside}."""
        try:
            report = self.service.ingest([s.path for s in saved], progress, self._ingested_folder_holding(saved))
        except IngestLockedError:
            withdraw(list(saved))
            raise
        self.record("upload", files=[str(s.path) for s in saved], added=report.added, failed=len(report.failed))
        return report, set_aside(list(saved), {Path(p.source).name for p in report.failed})

    def _ingested_folder_holding(self, saved: Sequence[SavedUpload]) -> Path | None:
        """The folder already ingested (a stored document's root) that holds the saved files, if any: they are
        named from it, as its next ingest names them (``hr/memo.md``, not ``memo.md`` of a root of its own)."""
        store_dir = self.service.settings.paths.store_dir
        roots = {absolute_path(resolve_root(d.root, store_dir)) for d in self.service.documents()}
        holding = [r for r in roots if saved and all(absolute_path(s.path).is_relative_to(r) for s in saved)]
        return max(holding, key=lambda r: len(r.parts)) if holding else None

    def remove(self, doc: DocumentInfo) -> int:
        """Remove a readable document from the store (and its file, when it was uploaded)."""
        doc = self.document(doc.source, doc.root)
        removed = remove_document(self.service.settings, doc.root, doc.source)
        self.record("remove", file=doc.source, root=doc.root, chunks=removed)
        return removed


def describe(reader: Reader) -> dict[str, Any]:
    """Who is reading, for a page or an API reply: their name, role and the collections they read."""
    person = reader.person
    if person is None:
        return {"name": None, "role": "owner", "collections": None}
    accounts = reader.service.accounts()
    readable = accounts.readable(person) if accounts is not None else []
    return {"name": person.name, "role": person.role, "collections": [c.name for c in readable]}
