"""Questions asked of chosen documents: which documents a scope holds, and how each search is held to it.

A scope is a set of stored documents (their folder key and name). People name them the way they see them:
a document's name (``reports/q3.pdf``), a folder of names (``reports`` or ``reports/``), an ingested folder
(``data``), or a path on disk (``./docs/reports``); :func:`resolve_scope` turns those into documents, and a
name that matches nothing is an error that says so (a typo must not silently widen the question to
everything). Both searches apply the scope before fusion and reranking (Chroma's ``where`` on the vector
side, the keyword index's own tables on the other), so a scoped question never sees a passage from outside.
The same object carries what a person may read (their collections, ``rag.access``): a question's scope is
narrowed to it, and every read made on their behalf goes through it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import SourcierError
from rag.search.names import absolute_path, document_path


class ScopeError(SourcierError):
    """A name given to scope a question matches no stored document."""


@dataclass(frozen=True)
class Scope:
    """What a search may read: the documents a question is limited to, as (root, source) pairs (None: any),
    and the collections one of which a chunk must belong to (None: any; ``rag.access``: what the asker may
    read). Both searches apply it before fusion and reranking (``rag.search.store`` turns it into Chroma's filter and
    the keyword index's)."""

    documents: frozenset[tuple[str, str]] | None = None
    collections: frozenset[str] | None = None

    @property
    def empty(self) -> bool:
        """Whether it admits nothing at all (no document chosen, or no collection readable)."""
        return self.documents == frozenset() or self.collections == frozenset()

    def admits(self, root: str, source: str, collections: Iterable[str] = ()) -> bool:
        """Whether a chunk of document (root, source) that belongs to ``collections`` is inside."""
        if self.documents is not None and (root, source) not in self.documents:
            return False
        return self.collections is None or not self.collections.isdisjoint(collections)

    def admits_chunk(self, metadata: Mapping[str, Any]) -> bool:
        """Whether a stored chunk (its metadata) is inside."""
        return self.admits(str(metadata.get("root", "")), str(metadata.get("source", "")), chunk_collections(metadata))

    def narrowed(self, other: Scope | None) -> Scope:
        """What both this scope and ``other`` admit."""
        if other is None:
            return self
        documents = _both(self.documents, other.documents)
        return Scope(documents, _both(self.collections, other.collections))

    def describe(self) -> list[str]:
        """The documents' names, for display."""
        return sorted(source for _, source in self.documents or ())


def _both(a: frozenset[Any] | None, b: frozenset[Any] | None) -> frozenset[Any] | None:
    return b if a is None else a if b is None else a & b


def within(scope: Scope | None, other: Scope | None) -> Scope | None:
    """``scope`` narrowed to ``other`` (either may be None: no limit)."""
    return other if scope is None else scope.narrowed(other)


def chunk_collections(metadata: Mapping[str, Any]) -> list[str]:
    """The collections a stored chunk belongs to (its metadata ``collections``: a list of ids)."""
    found = metadata.get("collections")
    return [str(c) for c in found] if isinstance(found, list | tuple) else []


COLLECTION = "collection:"  # a name of this form names a collection (rag.accounts): every document in it


def resolve_scope(
    documents: Iterable[Any],
    names: Sequence[str],
    store_dir: Path,
    collections: Mapping[str, str] | None = None,
) -> Scope | None:
    """The scope that ``names`` (documents, folders, ingested folders, paths on disk, ``collection:NAME``
    among ``collections``: name -> id) select among ``documents`` (anything with ``root``, ``source`` and, for
    collections, ``collections``); None for no names (all documents)."""
    if not names:
        return None
    docs = list(documents)
    pairs = [(d.root, d.source) for d in docs]
    chosen: set[tuple[str, str]] = set()
    for name in names:
        if name.startswith(COLLECTION) and name[len(COLLECTION) :] in (collections or {}):
            wanted = (collections or {})[name[len(COLLECTION) :]]
            matched = {(d.root, d.source) for d in docs if wanted in getattr(d, "collections", ())}
        else:
            matched = _matching(pairs, name, store_dir)
        if not matched:
            raise ScopeError(f"no document or folder in the store matches {name!r} (see the document list)")
        chosen |= matched
    return Scope(frozenset(chosen))


def _matching(docs: list[tuple[str, str]], name: str, store_dir: Path) -> set[tuple[str, str]]:
    folder = name.strip().rstrip("/")
    by_name = {
        (root, source)
        for root, source in docs
        if source == name
        or source.startswith(folder + "/")
        or root == folder
        or f"{root}/{source}" == name
        or f"{root}/{source}".startswith(folder + "/")
    }
    if by_name or not name.strip():
        return by_name
    path = Path(name).expanduser()
    if not path.exists():
        return set()
    target = absolute_path(path)
    found = set()
    for root, source in docs:
        where = absolute_path(document_path(root, source, store_dir))
        if where == target or where.is_relative_to(target):
            found.add((root, source))
    return found
