"""The private parts of our dependencies that sourcier uses are all in one place per dependency
(rag.search.chroma_internals, rag.llm.llama_internals): these tests run them against the installed versions, and
check that a dependency that moved them gets a clear error naming the tested version, not a silent leak."""

from __future__ import annotations

import ast

import pytest

from rag.errors import ModelFileError, StoreError
from rag.llm import llama_internals
from rag.search import chroma_internals
from rag.search.store import EmbeddedStore, open_store
from tests.conftest import REPO
from tests.fakes import FAKE_INFO, FakeEmbedder

PRIVATE = {"_server", "_session", "_system", "_identifier_to_system", "_identifier_to_refcount", "_ctx"}


def test_no_other_module_touches_a_dependencys_private_parts():
    allowed = {REPO / "rag" / "search" / "chroma_internals.py", REPO / "rag" / "llm" / "llama_internals.py"}
    for package in ("rag", "ingest", "service", "api", "ui", "evaluation"):
        for path in (REPO / package).rglob("*.py"):
            if path in allowed:
                continue
            tree = ast.parse(path.read_text(encoding="utf-8"))
            used = {
                n.attr
                for n in ast.walk(tree)
                if isinstance(n, ast.Attribute) and not (isinstance(n.value, ast.Name) and n.value.id == "self")
            } & PRIVATE  # an object's own attributes are its business
            used |= {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and n.value in PRIVATE}
            assert not used, f"{path.relative_to(REPO)} uses {used}: go through rag.search.chroma_internals"


def test_the_installed_chromadb_still_has_what_an_embedded_store_uses(settings):
    store = open_store(settings, FAKE_INFO)
    store.upsert(["a"], [FakeEmbedder().embed_query("hello")], ["hello"], [{"source": "a.txt", "root": "r"}])
    assert isinstance(store, EmbeddedStore)
    system = chroma_internals.client_system(store.client)
    assert callable(system.stop)
    chroma_internals.forget_cached_store(settings.paths.store_dir)  # the cache is still where we look
    assert open_store(settings, FAKE_INFO).system() is not system  # a fresh system: the writes are read again
    assert open_store(settings, FAKE_INFO).count() == 1


class Moved:
    """A client whose internals a new release has renamed."""

    _server = object()


def test_a_chromadb_that_moved_its_internals_is_named_with_the_tested_version():
    with pytest.raises(StoreError, match=r"no longer has PersistentClient._server._system.*chromadb>=1.5,<2"):
        chroma_internals.client_system(Moved())
    with pytest.raises(StoreError, match=r"no longer has HttpClient._server._session.*chromadb>=1.5,<2"):
        chroma_internals.bound_requests(Moved(), 5.0)


def test_the_store_cache_guard_names_the_change(monkeypatch):
    from chromadb.api.client import SharedSystemClient

    monkeypatch.delattr(SharedSystemClient, "_identifier_to_system")
    with pytest.raises(StoreError, match="SharedSystemClient._identifier_to_system"):
        chroma_internals.forget_cached_store(REPO / "nowhere")


def test_a_llama_cpp_python_that_moved_its_context_is_named_with_the_tested_version():
    pytest.importorskip("llama_cpp")

    class Llama:
        def n_vocab(self):
            return 10

    with pytest.raises(ModelFileError, match=r"no longer has Llama._ctx.*llama-cpp-python==0.3.36"):
        llama_internals.last_logits(Llama())
