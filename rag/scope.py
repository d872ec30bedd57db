"""Questions asked of chosen documents: which documents a scope holds, and how each search is held to it.

A scope is a set of stored documents (their folder key and name). People name them the way they see them:
a document's name (``reports/q3.pdf``), a folder of names (``reports`` or ``reports/``), an ingested folder
(``data``), or a path on disk (``./docs/reports``); :func:`resolve_scope` turns those into documents, and a
name that matches nothing is an error that says so (a typo must not silently widen the question to
everything). Both searches apply the scope before fusion and reranking (Chroma's ``where`` on the vector
side, the scope's chunk ids on the keyword side), so a scoped question never sees a passage from outside.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import SourcierError
from rag.names import absolute_path, document_path


class ScopeError(SourcierError):
    """A name given to scope a question matches no stored document."""


@dataclass(frozen=True)
class Scope:
    """The documents a question is limited to, as (root, source) pairs."""

    documents: frozenset[tuple[str, str]]

    def where(self) -> dict[str, Any]:
        """The Chroma ``where`` filter that selects the scope's chunks."""
        by_root: dict[str, list[str]] = {}
        for root, source in sorted(self.documents):
            by_root.setdefault(root, []).append(source)
        clauses = [{"$and": [{"root": root}, {"source": {"$in": sources}}]} for root, sources in by_root.items()]
        return clauses[0] if len(clauses) == 1 else {"$or": clauses}

    def describe(self) -> list[str]:
        """The documents' names, for display."""
        return sorted(source for _, source in self.documents)


def resolve_scope(documents: Iterable[Any], names: Sequence[str], store_dir: Path) -> Scope | None:
    """The scope that ``names`` (documents, folders, ingested folders, paths on disk) select among
    ``documents`` (anything with ``root`` and ``source``); None for no names (all documents)."""
    if not names:
        return None
    docs = [(d.root, d.source) for d in documents]
    chosen: set[tuple[str, str]] = set()
    for name in names:
        matched = _matching(docs, name, store_dir)
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
