"""The persistent keyword index (SQLite FTS5): in step with the store through ingests, updates and removals,
seen by readers without a rebuild, filled once for an older store, same ranking as the in-memory BM25."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import uuid

import pytest

from rag.search.keyword import INDEX_FILE, MemoryKeywordIndex, SqliteKeywordIndex
from rag.search.retrieval import Retriever
from rag.search.store import drop_cached_stores, open_store, store_system
from rag.search.writer_lock import ingest_in_this_process
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
    import rag.search.keyword

    index = SqliteKeywordIndex(tmp_path / INDEX_FILE)
    common = [f"Le contrat numéro {i} est signé." for i in range(30)]
    index.add([f"c{i}" for i in range(30)], common)
    index.add(["rare"], ["Le contrat de licence zygomorphe est signé."])
    exact = index.search("contrat zygomorphe", 40)
    assert exact[0][0] == "rare" and len(exact) == 31  # within budget: every chunk holding a term
    monkeypatch.setattr(rag.search.keyword, "MAX_POSTINGS", 10)
    assert [cid for cid, _ in index.search("contrat zygomorphe", 40)] == ["rare"]  # the rarest term alone
    assert len(index.search("contrat", 40)) == 31  # the rarest term is always searched


# -- a reader's old copies of the store are released ----------------------------------------------------


@pytest.fixture
def live_reader(settings, corpus, monkeypatch):
    import rag.search.retrieval
    from rag.search.retrieval import LiveRetriever

    fake_ingestor(settings)[0].run([corpus])
    monkeypatch.setattr(rag.search.retrieval, "RELEASE_GRACE_S", 0.0)
    monkeypatch.setattr(rag.search.retrieval, "FRESH_MAX", -1)  # every write reopens the store (tests below lift it)
    released = []
    real_release = rag.search.retrieval.release_system
    monkeypatch.setattr(rag.search.retrieval, "release_system", lambda system: released.append(real_release(system)))
    live = LiveRetriever(settings, FakeEmbedder(), FAKE_INFO)
    live.released = released
    yield live
    drop_cached_stores()


def another_process_wrote(settings) -> None:
    from rag.search.store import CHANGE_MARKER

    (settings.paths.store_dir / CHANGE_MARKER).write_text(f"written elsewhere {uuid.uuid4()}", encoding="utf-8")


def test_a_reader_stops_the_copies_of_the_store_it_moved_away_from(live_reader, settings):
    assert store_system(live_reader.store) is not None, "chromadb changed: update rag.search.store.store_system"
    for _ in range(3):
        another_process_wrote(settings)
        assert live_reader.search("indemnité internet", k=2)
    assert live_reader.released == [True, True, True] and not live_reader._retired


def test_a_copy_still_searched_or_under_an_ingest_is_kept_until_then(live_reader, settings):
    from rag.search.writer_lock import ingest_lock

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
    hold = "import sys, time\nfrom pathlib import Path\nfrom rag.search.writer_lock import ingest_lock\n"
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


# -- a reader follows another process's writes without loading the vector index again -------------------

WRITE = """
import sys
from pathlib import Path
from rag.settings import PathSettings, Settings
from rag.search.store import open_store
from tests.fakes import FAKE_INFO, FakeEmbedder

settings = Settings(paths=PathSettings(store_dir=Path(sys.argv[1])))
store = open_store(settings, FAKE_INFO)
if sys.argv[2] == "add":
    text = "Le quokka de Zanzibar migre en hiver."
    meta = {"root": "elsewhere", "source": "quokka.txt", "page": 1, "start": 0, "end": len(text)}
    store.upsert(["quokka"], FakeEmbedder().embed_documents([text]), [text], [meta])
else:
    store.delete(sys.argv[3:])
"""


def another_process(settings, *args: str) -> None:
    cmd = [sys.executable, "-c", WRITE, str(settings.paths.store_dir), *args]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


@pytest.fixture
def follower(live_reader, monkeypatch):
    import rag.search.retrieval

    monkeypatch.setattr(rag.search.retrieval, "FRESH_MAX", 20_000)
    live_reader.search("compost", k=2)  # its copy's vectors loaded
    return live_reader


def test_a_chunk_written_by_another_process_is_found_by_its_vector_without_reopening(follower, settings):
    copy = follower._retriever
    assert not any(p.source == "quokka.txt" for p in follower.search("quokka Zanzibar", k=5))
    another_process(settings, "add")
    found = [p for p in follower.search("quokka Zanzibar hiver", k=5) if p.source == "quokka.txt"]
    embedder = follower.embedder
    cosine = sum(
        a * b
        for a, b in zip(
            embedder.embed_query("quokka Zanzibar hiver"),
            embedder.embed_documents(["Le quokka de Zanzibar migre en hiver."])[0],
            strict=True,
        )
    )
    assert found and found[0].similarity == pytest.approx(cosine, abs=1e-5)  # found by its vector too
    assert follower._retriever is copy and not follower._retired  # nothing reopened, nothing reloaded
    assert copy.fresh is not None and set(copy.fresh.vectors) == {"quokka"}
    keyword_only = replace_settings(follower, vector=False)
    assert [p.source for p in keyword_only.search("quokka Zanzibar", k=1)] == ["quokka.txt"]


def replace_settings(live, **retrieval):
    from rag.search.retrieval import Retriever

    settings = live.settings.model_copy(deep=True)
    for key, value in retrieval.items():
        setattr(settings.retrieval, key, value)
    return Retriever(live.store, live.embedder, settings)


def test_chunks_removed_by_another_process_leave_the_vector_hits_without_reopening(follower, settings):
    copy = follower._retriever
    gone = [p.chunk_id for p in follower.search("compost jardin", k=30) if p.source == "compost-guide.md"]
    assert gone
    another_process(settings, "delete", *gone)
    query_vector = follower.embedder.embed_query("compost jardin")
    stale = copy.store.nearest(query_vector, 50)  # the copy's own index still holds them
    assert set(gone) & {h.chunk_id for h in stale}
    assert not any(p.source == "compost-guide.md" for p in follower.search("compost jardin", k=30))
    assert follower._retriever is copy and copy.fresh.removed == set(gone)
    merged = copy.fresh.merge(query_vector, stale, 50)
    assert not set(gone) & {h.chunk_id for h in merged}
    assert [h.rank for h in merged] == list(range(len(merged)))


def test_a_scoped_search_keeps_fresh_chunks_of_other_documents_out(follower, settings):
    from rag.search.scope import resolve_scope

    another_process(settings, "add")
    scope = resolve_scope(follower.store.documents(), ["compost-guide.md"], settings.paths.store_dir)
    assert all(p.source == "compost-guide.md" for p in follower.search("quokka Zanzibar hiver", k=5, scope=scope))


def test_too_many_writes_or_a_log_that_lost_some_open_the_store_again(follower, settings, monkeypatch):
    import rag.search.retrieval

    copy = follower._retriever
    monkeypatch.setattr(rag.search.retrieval, "FRESH_MAX", 0)
    another_process(settings, "add")
    assert any(p.source == "quokka.txt" for p in follower.search("quokka Zanzibar", k=5))
    assert follower._retriever is not copy and follower.released == [True]  # reopened, the old copy released
    assert follower._retriever.fresh is not None and len(follower._retriever.fresh) == 0

    monkeypatch.setattr(rag.search.retrieval, "FRESH_MAX", 20_000)
    second = follower._retriever
    another_process(settings, "delete", "quokka")
    another_process(settings, "add")
    with sqlite3.connect(settings.paths.store_dir / INDEX_FILE) as db:  # as a writer past RECENT_KEPT does
        db.execute("DELETE FROM recent WHERE seq < (SELECT MAX(seq) FROM recent)")  # the removal is lost
    assert follower.store.keywords.recent_since(second.fresh.seq) is None
    assert any(p.source == "quokka.txt" for p in follower.search("quokka Zanzibar", k=5))
    assert follower._retriever is not second


def test_the_log_of_writes_is_kept_in_step_and_bounded(tmp_path, monkeypatch):
    import numpy as np

    import rag.search.keyword

    index = SqliteKeywordIndex(tmp_path / INDEX_FILE)
    vector = np.arange(4, dtype=np.float32).tobytes()
    assert index.last_write() == 0 and index.recent_since(0) == []
    index.add(["a", "b"], [TEXTS["a"], TEXTS["b"]], [vector, vector])
    index.remove(["a"], log=True)
    index.remove(["b"])  # not logged (a repair of the index, not a removal from the store)
    assert index.recent_since(0) == [(1, "a", vector), (2, "b", vector), (3, "a", None)]
    assert index.recent_since(2) == [(3, "a", None)] and index.recent_since(3) == []
    monkeypatch.setattr(rag.search.keyword, "RECENT_KEPT", 2)
    index.add(["c"], [TEXTS["c"]], [vector])
    assert index.recent_since(0) is None and [seq for seq, _, _ in index.recent_since(2)] == [3, 4]
    assert index.recent_since(7) is None  # a reader ahead of the log: the index was made again
    index.close()


def test_fresh_vectors_are_searched_safely_while_they_catch_up():
    import threading

    import numpy as np

    from rag.search.retrieval import FreshVectors

    class Log:  # the keyword index's log of writes
        def __init__(self) -> None:
            self.writes: list[tuple[int, str, bytes | None]] = []

        def last_write(self) -> int:
            return self.writes[-1][0] if self.writes else 0

        def recent_since(self, seq: int):
            return [w for w in self.writes if w[0] > seq]

    log, errors, stop = Log(), [], threading.Event()
    fresh = FreshVectors(log)
    query = np.ones(8, dtype=np.float32)

    def search() -> None:
        while not stop.is_set():
            try:
                hits = fresh.merge(query, [], 5)
                assert [h.rank for h in hits] == list(range(len(hits)))
            except Exception as exc:  # noqa: BLE001 - any failure is the bug
                errors.append(repr(exc))

    searchers = [threading.Thread(target=search) for _ in range(3)]
    for t in searchers:
        t.start()
    seq = 0
    for batch in range(200):
        for i in range(10):
            seq += 1
            vector = np.full(8, float(i + 1), dtype=np.float32)
            log.writes.append((seq, f"c{batch}-{i}", vector.tobytes() if i % 5 else None))
        assert fresh.catch_up()
    stop.set()
    for t in searchers:
        t.join()
    assert not errors, errors[:3]
    assert len(fresh.vectors) == 1600 and len(fresh.removed) == 400 and fresh.seq == 2000
    best = fresh.merge(query, [], 3)
    assert all(h.score == pytest.approx(1.0) for h in best)


# -- the document list comes from the keyword index -------------------------------------------------------


def test_the_document_list_is_read_from_the_index_and_equals_chromas_through_changes(settings, corpus, monkeypatch):
    from rag.search.store import Store

    ingestor, _ = fake_ingestor(settings)
    ingestor.run([corpus])
    store = ingestor.store
    assert store.documents() == store.documents_from_chunks() and len(store.documents()) > 3

    first = sorted(corpus.iterdir())[0]
    first.unlink()
    (corpus / "owls.txt").write_text("Les chouettes effraies nichent dans les granges.\n", encoding="utf-8")
    changed = sorted(f for f in corpus.iterdir() if f.suffix in (".md", ".txt") and f != first)[-1]
    changed.write_text(changed.read_text(encoding="utf-8") + "\n\nOne more paragraph.\n", encoding="utf-8")
    ingestor.run([corpus])  # removed, added, changed (kept chunks get a new ingest time)
    expected = store.documents_from_chunks()
    assert {d.source for d in expected} >= {"owls.txt"} and first.name not in {d.source for d in expected}

    def no_scan(self, where=None):
        raise AssertionError("the document list read every chunk's metadata")

    monkeypatch.setattr(Store, "iter_metadatas", no_scan)
    assert store.documents() == expected


@pytest.mark.parametrize("page", [5000, 5], ids=["by-id", "page-by-page"])
def test_an_index_written_before_it_kept_documents_learns_them_once(settings, corpus, monkeypatch, page):
    import rag.search.store

    monkeypatch.setattr(rag.search.store, "READ_PAGE", page)  # 5: most of the store is read page by page
    ingestor, _ = fake_ingestor(settings)
    ingestor.run([corpus])
    store = ingestor.store
    expected = store.documents_from_chunks()
    with sqlite3.connect(settings.paths.store_dir / INDEX_FILE) as db:
        db.execute("DELETE FROM chunk_docs")  # as an index of an earlier version
    assert len(store.keywords.ids_without_metadata()) == store.count()
    assert store.documents() == expected
    assert store.keywords.ids_without_metadata() == []
