"""The only place sourcier reaches inside chromadb past its public API.

Three things chromadb 1.x does not offer publicly:
- a timeout for the HTTP client's requests (it waits forever by default): its ``httpx.Client`` session;
- forgetting one store folder in the per-process cache of embedded stores, so that writes made by another
  process (an ingest) are seen by a long-running reader that opens the store again;
- the "system" (database connection, in-memory vector index) behind an embedded client, so that a reader
  that moved to a fresh copy can stop the old one and give its memory back.

Each function checks that what it uses is still there and otherwise raises :class:`StoreError` naming the
tested version: ``tests/unit/test_dependency_guards.py`` runs them against the installed chromadb, so a new
release that renames them fails there, loudly, instead of silently leaking memory or hanging.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rag.errors import StoreError

TESTED = "chromadb>=1.5,<2"


def _changed(what: str) -> StoreError:
    import chromadb

    return StoreError(
        f"chromadb {getattr(chromadb, '__version__', '?')} no longer has {what}, which sourcier uses; "
        f"install the tested version (pip install '{TESTED}')"
    )


def http_session(client: Any) -> Any:
    """The ``httpx.Client`` behind a ``chromadb.HttpClient`` (``client._server._session``)."""
    import httpx

    session = getattr(getattr(client, "_server", None), "_session", None)
    if not isinstance(session, httpx.Client):
        raise _changed("HttpClient._server._session (an httpx.Client), where the request timeout is set")
    return session


def bound_requests(client: Any, timeout_s: float) -> None:
    """Every request of a ``chromadb.HttpClient`` gives up after ``timeout_s`` (connecting: 10 s at most)."""
    import httpx

    http_session(client).timeout = httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0))


def _system_cache() -> tuple[dict[str, Any], dict[str, Any]]:
    from chromadb.api.client import SharedSystemClient

    systems = getattr(SharedSystemClient, "_identifier_to_system", None)
    refcounts = getattr(SharedSystemClient, "_identifier_to_refcount", None)
    if not isinstance(systems, dict) or not isinstance(refcounts, dict):
        raise _changed("SharedSystemClient._identifier_to_system / _identifier_to_refcount (its store cache)")
    return systems, refcounts


def forget_cached_store(store_dir: Path | None = None) -> None:
    """Drop one embedded store folder (or every one) from chromadb's per-process cache; clients already
    open keep their own copy."""
    from chromadb.api.client import SharedSystemClient

    if store_dir is None:
        SharedSystemClient.clear_system_cache()  # public
        return
    systems, refcounts = _system_cache()
    systems.pop(str(store_dir), None)
    refcounts.pop(str(store_dir), None)


def client_system(client: Any) -> Any:
    """The system behind an embedded ``chromadb.PersistentClient`` (``client._server._system``)."""
    system = getattr(getattr(client, "_server", None), "_system", None)
    if system is None or not callable(getattr(system, "stop", None)):
        raise _changed("PersistentClient._server._system (with stop()), which frees a reopened store's memory")
    return system
