"""A team's people and collections (rag.accounts), and the rule in the search itself: a person's questions read
only the collections they were granted, through every way the store is read."""

from __future__ import annotations

import io
import os
import stat

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import rag.accounts as accounts_module
from rag.accounts import AccessError, Accounts, LockedOut
from rag.retrieval import Retriever
from rag.scope import Scope
from tests.conftest import make_settings
from tests.fakes import FakeEmbedder, fake_ingestor

QUESTION = "How many weeks does parental leave last?"
TEXTS = {
    "hr/leave-policy.md": "# Leave policy\n\nParental leave lasts 16 weeks at full pay. Parents may split the weeks.",
    "hr/salaries.md": "# Salaries 2026\n\nThe salary grid rises by 3 percent in March for every grade.",
    "legal/leave-memo.md": "# Memo on leave\n\nParental leave for the legal team lasts 20 weeks, then part time.",
    "legal/contract.md": "# Contract template\n\nThe notice period is three months for either party.",
    "public/canteen.txt": "The canteen serves lunch from noon; parental leave questions go to HR.",
}
PASSWORD = "correct horse battery"


@pytest.fixture
def team(tmp_path):
    """A store of three folders, an admin, alice (hr) and bob (legal); public/ belongs to no collection."""
    docs = tmp_path / "docs"
    for name, text in TEXTS.items():
        (docs / name).parent.mkdir(parents=True, exist_ok=True)
        (docs / name).write_text(text, encoding="utf-8")
    settings = make_settings(tmp_path)
    settings.retrieval.min_similarity = 0.0
    ingestor, embedder = fake_ingestor(settings)
    ingestor.run([docs])
    accounts = Accounts.of_store(settings.paths.store_dir)
    accounts.add("root", PASSWORD, "admin")
    alice, bob = accounts.add("alice", PASSWORD), accounts.add("bob", PASSWORD)
    accounts.create_collection("hr", [docs / "hr"])
    accounts.create_collection("legal", [docs / "legal"])
    accounts.grant("hr", "alice")
    accounts.grant("legal", "bob")
    assert ingestor.sync_collections() == 4  # the chunks of the four documents in a collection
    yield settings, ingestor, accounts, alice, bob, docs
    accounts.close()


def folders(passages) -> set[str]:
    return {p.source.split("/")[0] for p in passages}


def test_passwords_are_scrypt_hashes_in_a_file_only_its_owner_reads(team):
    settings, _, accounts, *_ = team
    mode = stat.S_IMODE(os.stat(accounts.path).st_mode)
    assert mode == 0o600
    stored = accounts._run("SELECT password FROM people WHERE name = 'alice'")[0][0]
    assert stored.startswith("scrypt$32768$8$1$") and PASSWORD not in stored
    assert accounts.login("alice", PASSWORD).name == "alice"
    with pytest.raises(AccessError, match="at least 10"):
        accounts.add("carol", "short")
    with pytest.raises(AccessError, match="already"):
        accounts.add("alice", PASSWORD)


def test_wrong_passwords_lock_the_account_then_the_address(team, monkeypatch, caplog):
    _, _, accounts, *_ = team
    for _ in range(accounts_module.FAILURES_ALLOWED):
        with pytest.raises(AccessError, match="wrong name or password"):
            accounts.login("alice", "not the password", "10.0.0.7")
    with pytest.raises(LockedOut):  # the right password too, while locked
        accounts.login("alice", PASSWORD, "10.0.0.8")
    assert "alice locked" in caplog.text or "account:alice locked" in caplog.text
    assert accounts.login("bob", PASSWORD, "10.0.0.7").name == "bob"  # another account from that address
    with pytest.raises(AccessError, match="wrong name or password"):  # an unknown name: the same answer
        accounts.login("nobody", PASSWORD, "10.0.0.9")
    # the lock ends
    later = accounts_module.time.time() + accounts_module.LOCKOUT_S + 1
    monkeypatch.setattr(accounts_module.time, "time", lambda: later)
    assert accounts.login("alice", PASSWORD).name == "alice"
    # one address trying many names is locked as a whole
    monkeypatch.setattr(accounts_module, "ADDRESS_FAILURES_ALLOWED", 3)
    for name in ("x1", "x2", "x3"):
        with pytest.raises(AccessError):
            accounts.login(name, "guess-guess-guess", "203.0.113.5")
    with pytest.raises(LockedOut):
        accounts.login("bob", PASSWORD, "203.0.113.5")


def test_sessions_expire_and_end_and_keys_are_revocable(team, monkeypatch):
    _, _, accounts, alice, bob, _ = team
    token = accounts.open_session(alice)
    assert accounts.session(token) == alice
    accounts.close_session(token)
    with pytest.raises(AccessError, match="ended"):
        accounts.session(token)
    short = accounts.open_session(alice, lifetime_s=0.01)
    later = accounts_module.time.time() + 1
    monkeypatch.setattr(accounts_module.time, "time", lambda: later)
    with pytest.raises(AccessError):
        accounts.session(short)
    kept = accounts.open_session(bob)
    accounts.reset("bob", "another long password")  # a new password ends the sessions
    with pytest.raises(AccessError):
        accounts.session(kept)
    ident, key = accounts.new_key("bob")
    assert key.startswith("sk-sourcier-") and key not in str(accounts._run("SELECT * FROM keys"))
    assert accounts.key_holder(key) == bob and accounts.key_holder(key + "x") is None
    accounts.revoke_key(ident)
    assert accounts.key_holder(key) is None


def test_the_last_admin_stays(team):
    _, _, accounts, *_ = team
    with pytest.raises(AccessError, match="last admin"):
        accounts.remove("root")
    with pytest.raises(AccessError, match="last admin"):
        accounts.set_role("root", "member")
    accounts.set_role("alice", "admin")
    accounts.remove("root")
    assert [p.name for p in accounts.people()] == ["alice", "bob"]


@pytest.mark.parametrize("searches", ["hybrid", "vector", "keyword", "memory keywords"])
def test_each_person_finds_only_their_collection(team, searches):
    settings, ingestor, accounts, alice, bob, _ = team
    settings.retrieval.vector = searches in ("hybrid", "vector")
    settings.retrieval.keyword = searches != "vector"
    store = ingestor.store
    if searches == "memory keywords":
        store.keywords = None  # a Chroma server without a shared index: the scope's ids come from Chroma
    retriever = Retriever(store, FakeEmbedder(), settings)
    everything = retriever.search(QUESTION, k=10)
    assert folders(everything) == {"hr", "legal", "public"}
    assert folders(retriever.search(QUESTION, k=10, scope=accounts.scope_for(alice))) == {"hr"}
    assert folders(retriever.search(QUESTION, k=10, scope=accounts.scope_for(bob))) == {"legal"}
    assert accounts.scope_for(accounts.person("root")) is None  # an admin reads everything
    # a question narrowed to a document outside one's collections finds nothing
    theirs = Scope(frozenset({("docs", "legal/leave-memo.md")})).narrowed(accounts.scope_for(alice))
    assert retriever.search(QUESTION, k=10, scope=theirs) == []


def test_every_read_of_the_corpus_is_held_to_the_scope(team):
    _, ingestor, accounts, alice, bob, _ = team
    store = ingestor.store
    mine, theirs = accounts.scope_for(alice), accounts.scope_for(bob)
    assert [d.source for d in store.documents(mine)] == ["hr/leave-policy.md", "hr/salaries.md"]
    [hr] = accounts.readable(alice)
    assert all(d.collections == {hr.id} for d in store.documents(mine))
    ids = {cid for cid, meta in store.iter_metadatas() if meta["source"].startswith("legal/")}
    assert store.records(sorted(ids), mine) == {} and set(store.records(sorted(ids), theirs)) == ids
    legal = next(iter(ids))
    index = int(store.records([legal])[legal][1]["chunk_index"])
    assert store.neighbours("docs", "legal/leave-memo.md", [index, index + 1], mine) == {}
    assert store.ids_in(mine) == {c for c, m in store.iter_metadatas() if m["source"].startswith("hr/")}
    assert store.ids_in(Scope(collections=frozenset())) == set()
    # each search applies the scope itself (the passages are read through it again after: two walls, not one)
    hr_ids = store.ids_in(mine)
    vector = FakeEmbedder().embed_query(QUESTION)
    assert {h.chunk_id for h in store.nearest(vector, 10)} - hr_ids, "the question matches other folders too"
    assert {h.chunk_id for h in store.nearest(vector, 10, mine)} <= hr_ids
    assert {cid for cid, _ in store.keywords.search(QUESTION, 10)} - hr_ids
    assert {cid for cid, _ in store.keywords.search(QUESTION, 10, scope=mine)} <= hr_ids


def test_collection_changes_reach_the_store_without_embedding_again(team):
    settings, ingestor, accounts, alice, bob, docs = team
    embedder = ingestor.embedder
    calls = list(embedder.calls)
    retriever = Retriever(ingestor.store, FakeEmbedder(), settings)
    accounts.add_paths("hr", [docs / "public"])  # hr now holds the canteen too
    assert ingestor.sync_collections() == 1
    assert folders(retriever.search(QUESTION, k=10, scope=accounts.scope_for(alice))) == {"hr", "public"}
    accounts.remove_collection("legal")
    assert ingestor.sync_collections() == 2
    assert retriever.search(QUESTION, k=10, scope=accounts.scope_for(bob)) == []
    assert all(
        "collections" not in m for _, m in ingestor.store.iter_metadatas({"root": "docs"}) if "legal/" in m["source"]
    )
    # a new file in a collection's folder belongs to it from its first ingest; a changed one stays in it
    (docs / "hr" / "onboarding.md").write_text("# Onboarding\n\nNew staff get a laptop and parental leave forms.")
    (docs / "hr" / "leave-policy.md").write_text(TEXTS["hr/leave-policy.md"] + "\n\nAdoption counts the same.")
    report = ingestor.run([docs])
    assert report.regranted == 0, "the new and changed chunks were written with their collections"
    assert {d.source for d in ingestor.store.documents(accounts.scope_for(alice))} == {
        "hr/leave-policy.md",
        "hr/salaries.md",
        "hr/onboarding.md",
        "public/canteen.txt",
    }
    assert embedder.calls[: len(calls)] == calls  # only the new chunks were embedded


def test_a_file_that_leaves_every_collection_loses_it_even_for_its_kept_chunks(team):
    settings, ingestor, accounts, alice, _, docs = team
    accounts.remove_collection("hr")
    (docs / "hr" / "leave-policy.md").write_text(TEXTS["hr/leave-policy.md"] + "\n\nA new paragraph.")
    ingestor.run([docs])  # rewrites the kept chunks' metadata, then follows the collections
    for _, meta in ingestor.store.iter_metadatas():
        assert not (meta["source"].startswith("hr/") and meta.get("collections"))
    assert ingestor.store.documents(accounts.scope_for(alice)) == []


def test_a_live_reader_holds_chunks_written_since_it_loaded_to_the_scope(team):
    from rag.retrieval import LiveRetriever

    settings, ingestor, accounts, alice, bob, docs = team
    live = LiveRetriever(settings, FakeEmbedder(), ingestor.model)
    assert folders(live.search(QUESTION, k=10, scope=accounts.scope_for(alice))) == {"hr"}
    (docs / "legal" / "leave-faq.md").write_text("# FAQ\n\nParental leave weeks for lawyers: 20, see the memo.")
    fake_ingestor(settings)[0].run([docs])  # another writer
    assert live._retriever.fresh is not None
    found = live.search(QUESTION, k=10, scope=accounts.scope_for(alice))
    assert folders(found) == {"hr"}
    assert "legal/leave-faq.md" in {p.source for p in live.search(QUESTION, k=10, scope=accounts.scope_for(bob))}


@pytest.fixture(scope="module")
def shared_team(tmp_path_factory):
    """Eight documents in four folders, ingested once for the property test."""
    tmp = tmp_path_factory.mktemp("grants")
    docs = tmp / "docs"
    for i in range(8):
        folder = docs / f"team{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"note{i}.md").write_text(f"# Note {i}\n\nParental leave lasts {10 + i} weeks in team {i % 4}.")
    settings = make_settings(tmp)
    settings.retrieval.min_similarity = 0.0
    ingestor, _ = fake_ingestor(settings)
    ingestor.run([docs])
    accounts = Accounts.of_store(settings.paths.store_dir)
    accounts.add("root", PASSWORD, "admin")
    for i in range(4):
        accounts.create_collection(f"c{i}", [docs / f"team{i}"])
    accounts.create_collection("c01", [docs / "team0", docs / "team1"])
    ingestor.sync_collections()
    yield settings, ingestor, accounts
    accounts.close()


@hypothesis_settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    grants=st.lists(st.sets(st.sampled_from(["c0", "c1", "c2", "c3", "c01"]), max_size=3), min_size=1, max_size=3),
    question=st.sampled_from([QUESTION, "team weeks", "note", "lunch menu"]),
    k=st.integers(1, 8),
)
def test_every_returned_chunk_is_in_one_of_the_askers_collections(shared_team, grants, question, k):
    settings, ingestor, accounts = shared_team
    retriever = Retriever(ingestor.store, FakeEmbedder(), settings)
    for n, granted in enumerate(grants):
        name = f"p{n}"
        if name not in {p.name for p in accounts.people()}:
            accounts.add(name, PASSWORD)
        person = accounts.person(name)
        for c in accounts.collections():
            if person.name in c.readers and c.name not in granted:
                accounts.revoke(c.name, name)
            elif person.name not in c.readers and c.name in granted:
                accounts.grant(c.name, name)
        scope = accounts.scope_for(person)
        readable = {c.id for c in accounts.readable(person)}
        allowed = {f for c in accounts.readable(person) for f in c.paths}
        for p in retriever.search(question, k=k, scope=scope):
            meta = ingestor.store.records([p.chunk_id])[p.chunk_id][1]
            assert set(meta["collections"]) & readable
            assert any(
                (settings.paths.store_dir / ".." / "docs" / p.source).resolve().is_relative_to(f) for f in allowed
            )
        assert {d.source for d in ingestor.store.documents(scope)} <= {
            f"{folder.name}/{n}" for folder in allowed for n in os.listdir(folder)
        }


def test_the_admin_commands_set_up_a_team(tmp_path, monkeypatch, capsys):
    from admin.__main__ import main

    docs = tmp_path / "docs"
    (docs / "hr").mkdir(parents=True)
    (docs / "hr" / "a.md").write_text("# A\n\nParental leave lasts 16 weeks.")
    settings = make_settings(tmp_path)
    fake_ingestor(settings)[0].run([docs])
    store = ["--store", str(settings.paths.store_dir)]
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert main([*store, "users", "add", "alice", "--password-stdin"]) == 2  # the first one must be an admin
    assert "must be an admin" in capsys.readouterr().err
    for name, extra in (("root", ["--admin"]), ("alice", [])):
        monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
        assert main([*store, "users", "add", name, "--password-stdin", *extra]) == 0
    assert main([*store, "collections", "create", "hr", "--path", str(docs / "hr")]) == 0
    assert "1 chunk(s) of the store now carry their collections" in capsys.readouterr().out
    assert main([*store, "collections", "grant", "hr", "alice"]) == 0
    assert main([*store, "users", "key", "alice"]) == 0
    key = capsys.readouterr().out.strip().splitlines()[-1]
    assert main([*store, "users", "list"]) == 0
    listed = capsys.readouterr().out
    assert "root" in listed and "everything" in listed and "alice" in listed and "reads: hr" in listed
    accounts = Accounts.of_store(settings.paths.store_dir)
    assert accounts.key_holder(key).name == "alice"
    assert main([*store, "collections", "grant", "nope", "alice"]) == 2
    assert "no collection named 'nope'" in capsys.readouterr().err
