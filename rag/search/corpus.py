"""What a search reads from, as its callers see it: the stored documents and chunks, each read held to a scope.

The page, the API, the CLI and the LangChain retriever read the store only through this interface (a
retriever's ``corpus``), never through Chroma or its filters: ``rag.search.store.Store`` implements it, and a
retriever backed by something else only has to implement these few methods for the service to work with it.
Every method takes the :class:`~rag.search.scope.Scope` of the person asking (what they may read, and the documents
they chose): what lies outside it is not returned, so it cannot be shown, quoted or counted.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rag.search.scope import Scope

Record = tuple[str, dict[str, Any]]
"""A stored chunk: its text and its metadata (see ``ingest.chunking.chunk_metadata``)."""
CHUNK_ID = "chunk_id"  # in the metadata ``Corpus.neighbours`` returns: the chunk's stored id (never stored in it)


@dataclass
class DocumentInfo:
    """One document as the page lists it."""

    root: str
    source: str
    chunks: int = 0
    pages: set[int] = field(default_factory=set)
    ingested_at: str = ""
    collections: frozenset[str] = frozenset()  # the collections it belongs to (rag.access)


class Corpus(Protocol):
    def version(self) -> str:
        """Changes whenever chunks were written (cheap): what was read may be kept until it changes."""
        ...

    def documents(self, scope: Scope | None = None) -> list[DocumentInfo]:
        """The stored documents inside ``scope`` (all when None), sorted by (root, source)."""
        ...

    def records(self, ids: Sequence[str], scope: Scope | None = None) -> dict[str, Record]:
        """The chunks of these ids that exist and lie inside ``scope``, by id."""
        ...

    def neighbours(
        self, root: str, source: str, indexes: Sequence[int], scope: Scope | None = None
    ) -> dict[int, Record]:
        """The chunks of one document at these positions (``chunk_index``) that exist and lie inside ``scope``,
        each one's id in its metadata under ``CHUNK_ID``."""
        ...

    def languages(self) -> set[str] | None:
        """The languages of the stored chunks; None when the store cannot say."""
        ...


def documents_in(documents: Sequence[DocumentInfo], scope: Scope | None) -> list[DocumentInfo]:
    """Those of ``documents`` that ``scope`` admits (all when None)."""
    if scope is None:
        return list(documents)
    return [d for d in documents if scope.admits(d.root, d.source, d.collections)]
