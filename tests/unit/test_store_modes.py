"""One store class per mode behind one interface: the embedded one here (real Chroma in a temp folder); the
server one against a real `chroma run` in tests/integration/test_servers.py."""

from __future__ import annotations

from rag.search.keyword import INDEX_FILE
from rag.search.store import STORE_CLASSES, EmbeddedStore, ServerStore, Store, keyword_index_path, open_store
from tests.fakes import FAKE_INFO, FakeEmbedder


def test_each_mode_has_its_class_and_the_interface_is_abstract(settings):
    assert {"embedded": EmbeddedStore, "http": ServerStore} == STORE_CLASSES
    assert all(issubclass(cls, Store) for cls in STORE_CLASSES.values())
    assert Store.__abstractmethods__ >= {"version", "_mark_changed", "connect", "where"}
    settings.store.host, settings.store.port = "chroma.internal", 8000
    assert ServerStore.where(settings) == "chroma.internal:8000"
    assert ServerStore.default_keyword_index(settings) is None  # no folder of ours on a server


def test_the_embedded_store_announces_writes_in_its_folder(settings):
    store = open_store(settings, FAKE_INFO)
    assert type(store) is EmbeddedStore and store.system() is not None
    assert store.describe() == f"collection '{settings.store.collection}' at {settings.paths.store_dir}"
    assert keyword_index_path(settings) == settings.paths.store_dir / INDEX_FILE
    before = store.version()
    store.upsert(["a"], [FakeEmbedder().embed_query("hello")], ["hello"], [{"source": "a.txt", "root": "r"}])
    after = store.version()
    assert after != before and open_store(settings, FAKE_INFO).version() == after  # another reader sees it
    store.delete(["a"])
    assert store.version() != after and store.count() == 0
