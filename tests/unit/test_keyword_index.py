"""The persistent keyword index (SQLite FTS5): in step with the store through ingests, updates and removals,
seen by readers without a rebuild, filled once for an older store, same ranking as the in-memory BM25."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest

from rag.keyword import INDEX_FILE, MemoryKeywordIndex, SqliteKeywordIndex
from rag.retrieval import Retriever
from rag.store import drop_cached_stores, ingest_in_this_process, open_store, store_system
from tests.conftest import REPO, make_settings
from tests.fakes import FAKE_INFO, FakeEmbedder, fake_ingestor

TEXTS = {
    "a": "Pendant l'été, le compost chauffe au fond du jardin.",
    "b": "Hotel caps per night in Paris are set by the travel policy.",
    "c": "Le télétravail est possible deux jours par semaine.",
    "d": "Les hôtels de Paris sont plafonnés à 150 euros par nuit.",
}


def in_step(store) -> bool:
    return store.keywords is not None and set(store.keywords.entries()) == store.ids()


def test_search_folds_accents_and_plurals_and_ranks_like_the_memory_index(tmp_path):
    index = SqliteKeywordIndex(tmp_path / INDEX_FILE)
    index.add(list(TEXTS), list(TEXTS.values()))
    memory = MemoryKeywordIndex(list(TEXTS), list(TEXTS.values()))
    assert [cid for cid, _ in index.search("ete compost", 5)] == ["a"]
    assert [cid for cid, _ in index.search("TÉLÉTRAVAIL semaines", 5)] == ["c"]
    for query in ("hotel Paris nuit", "hotels per night", "compost été jardin", 'guillemets "doubles" OR AND'):
        ours, theirs = index.search(query, 5), memory.search(query, 5)
        assert [cid for cid, _ in ours] == [cid for cid, _ in theirs], query
        assert all(score > 0 for _, score in ours)
    assert index.search("motinconnu", 5) == [] and index.search("le la les", 5) == []


def test_add_is_idempotent_and_remove_forgets(tmp_path):
    index = SqliteKeywordIndex(tmp_path / INDEX_FILE)
    index.add(["a", "b"], [TEXTS["a"], TEXTS["b"]])
    index.add(["a"], [TEXTS["a"]])
    assert index.count() == 2
    index.remove(["a", "never-there"])
    assert index.ids() == {"b"} and index.search("compost", 5) == []


def test_ingest_keeps_the_index_in_step_through_changes_and_removals(settings, corpus):
    ingestor, _ = fake_ingestor(settings)
    ingestor.run([corpus])
    store = ingestor.store
    assert (settings.paths.store_dir / INDEX_FILE).exists() and in_step(store) and store.count() > 10

    first = sorted(corpus.iterdir())[0]
    first.unlink()
    (corpus / "owls.txt").write_text("Les chouettes effraies nichent dans les granges.\n", encoding="utf-8")
    report = ingestor.run([corpus])
    assert report.ok and report.removed and "owls.txt" in report.added
    assert in_step(store)
    retriever = Retriever(store, FakeEmbedder(), settings)
    assert retriever.search("chouettes effraies granges", k=1)[0].source == "owls.txt"


def test_a_reader_sees_a_write_at_once_without_rebuilding(settings, corpus):
    fake_ingestor(settings)[0].run([corpus])
    settings.retrieval.vector = False
    reader = Retriever(open_store(settings, FAKE_INFO), FakeEmbedder(), settings)
    assert reader.search("zygomorphe", k=3) == []
    index = reader.keyword_index
    (corpus / "new.md").write_text("# Botanique\n\nUne fleur zygomorphe a un seul plan de symétrie.\n")
    fake_ingestor(settings)[0].run([corpus])  # another writer
    found = reader.search("zygomorphe", k=3)
    assert reader.keyword_index is index  # the same index, not rebuilt
    assert [p.source for p in found] == ["new.md"]


def test_the_index_of_a_store_written_without_it_is_filled_once(tmp_path, corpus):
    old = make_settings(tmp_path)
    old.retrieval.keyword_index = "memory"
    fake_ingestor(old)[0].run([corpus])
    assert not (old.paths.store_dir / INDEX_FILE).exists()

    settings = make_settings(tmp_path)
    store = open_store(settings, FAKE_INFO)
    passages = Retriever(store, FakeEmbedder(), settings).search("indemnité forfaitaire internet", k=2)
    assert passages and in_step(store)


def test_an_ingest_repairs_an_index_left_off_by_a_crash(settings, corpus):
    ingestor, _ = fake_ingestor(settings)
    ingestor.run([corpus])
    store = ingestor.store
    clean = store.keywords.entries()
    victim = sorted(clean)[0]
    store.keywords.add(["ghost-chunk"], ["a chunk whose Chroma write never happened"])
    store.keywords.remove([victim])  # as if the index had lost one: the repair re-reads it from the store
    assert not in_step(store)
    ingestor.run([corpus])
    assert store.keywords.entries() == clean


def test_memory_mode_keeps_no_file(tmp_path, corpus):
    settings = make_settings(tmp_path)
    settings.retrieval.keyword_index = "memory"
    fake_ingestor(settings)[0].run([corpus])
    store = open_store(settings, FAKE_INFO)
    assert store.keywords is None
    assert isinstance(Retriever(store, FakeEmbedder(), settings).keyword_index, MemoryKeywordIndex)


@pytest.mark.parametrize("mode", ["sqlite", "memory"])
def test_both_indexes_find_the_same_passages(tmp_path, corpus, mode):
    settings = make_settings(tmp_path / mode)
    settings.retrieval.keyword_index = mode
    settings.retrieval.vector = False
    fake_ingestor(settings)[0].run([corpus])
    retriever = Retriever(open_store(settings, FAKE_INFO), FakeEmbedder(), settings)
    passages = retriever.search("indemnité forfaitaire internet électricité", k=3)
    assert passages[0].source == "politique-teletravail.pdf" and "25 euros" in passages[0].text


def test_a_search_leaves_out_the_commonest_terms_past_its_postings_budget(tmp_path, monkeypatch):
    import rag.keyword

    index = SqliteKeywordIndex(tmp_path / INDEX_FILE)
    common = [f"Le contrat numéro {i} est signé." for i in range(30)]
    index.add([f"c{i}" for i in range(30)], common)
    index.add(["rare"], ["Le contrat de licence zygomorphe est signé."])
    exact = index.search("contrat zygomorphe", 40)
    assert exact[0][0] == "rare" and len(exact) == 31  # within budget: every chunk holding a term
    monkeypatch.setattr(rag.keyword, "MAX_POSTINGS", 10)
    assert [cid for cid, _ in index.search("contrat zygomorphe", 40)] == ["rare"]  # the rarest term alone
    assert len(index.search("contrat", 40)) == 31  # the rarest term is always searched


# -- a reader's old copies of the store are released ----------------------------------------------------


@pytest.fixture
def live_reader(settings, corpus, monkeypatch):
    import rag.retrieval
    from rag.retrieval import LiveRetriever

    fake_ingestor(settings)[0].run([corpus])
    monkeypatch.setattr(rag.retrieval, "RELEASE_GRACE_S", 0.0)
    released = []
    real_release = rag.retrieval.release_system
    monkeypatch.setattr(rag.retrieval, "release_system", lambda system: released.append(real_release(system)))
    live = LiveRetriever(settings, FakeEmbedder(), FAKE_INFO)
    live.released = released
    yield live
    drop_cached_stores()


def another_process_wrote(settings) -> None:
    from rag.store import CHANGE_MARKER

    (settings.paths.store_dir / CHANGE_MARKER).write_text(f"written elsewhere {uuid.uuid4()}", encoding="utf-8")


def test_a_reader_stops_the_copies_of_the_store_it_moved_away_from(live_reader, settings):
    assert store_system(live_reader.store) is not None, "chromadb changed: update rag.store.store_system"
    for _ in range(3):
        another_process_wrote(settings)
        assert live_reader.search("indemnité internet", k=2)
    assert live_reader.released == [True, True, True] and not live_reader._retired


def test_a_copy_still_searched_or_under_an_ingest_is_kept_until_then(live_reader, settings):
    from ingest.lock import ingest_lock

    busy = live_reader._enter(reopen=False)  # a search running on the current copy
    another_process_wrote(settings)
    assert live_reader.search("indemnité internet", k=2)  # reopens; the busy copy is retired, not released
    assert live_reader.released == [] and len(live_reader._retired) == 1
    with ingest_lock(settings.paths.store_dir):  # an ingest of this process may be using it
        live_reader._leave(busy)
        assert live_reader.released == [] and ingest_in_this_process(settings.paths.store_dir)
    assert busy.search("indemnité internet", k=2)  # still whole
    live_reader.search("indemnité internet", k=2)
    assert live_reader.released == [True] and not ingest_in_this_process(settings.paths.store_dir)


def test_an_ingest_in_another_process_does_not_hold_the_readers_old_copies(live_reader, settings):
    hold = "import sys, time\nfrom pathlib import Path\nfrom ingest.lock import ingest_lock\n"
    hold += "with ingest_lock(Path(sys.argv[1])):\n    print('held', flush=True)\n    time.sleep(60)\n"
    other = subprocess.Popen(
        [sys.executable, "-c", hold, str(settings.paths.store_dir)], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert other.stdout.readline().strip() == "held"
        assert not ingest_in_this_process(settings.paths.store_dir)
        another_process_wrote(settings)
        assert live_reader.search("indemnité internet", k=2)
        assert live_reader.released == [True]  # released while the other process ingests
    finally:
        other.kill()
        other.wait()
        other.stdout.close()


def test_a_scoped_keyword_search_ranks_inside_the_scope_even_past_the_global_top(tmp_path):
    ids = [f"c{i}" for i in range(400)]
    texts = ["allowance allowance allowance per day travel"] * 399 + ["a long note that mentions the allowance once"]
    sqlite = SqliteKeywordIndex(tmp_path / "k.sqlite3")
    sqlite.add(ids, texts)
    memory = MemoryKeywordIndex(ids, texts)
    for index in (sqlite, memory):
        assert "c399" not in [cid for cid, _ in index.search("allowance", 30)]
        assert [cid for cid, _ in index.search("allowance", 30, within={"c399", "missing"})] == ["c399"]
        assert index.search("allowance", 30, within=set()) == []
    sqlite.close()
