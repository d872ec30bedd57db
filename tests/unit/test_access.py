"""A team's people and collections (rag.accounts), and the rule in the search itself: a person's questions read
only the collections they were granted, through every way the store is read."""

from __future__ import annotations

import io
import logging
import os
import stat

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

import rag.accounts as accounts_module
from rag.accounts import AccessError, Accounts, LockedOut
from rag.search.retrieval import Retriever
from rag.search.scope import Scope
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
    caplog.set_level(logging.INFO, logger="sourcier.accounts")
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


def test_a_question_can_name_a_collection_one_reads(team_service):
    from rag.search.scope import ScopeError

    service, accounts = team_service
    alice, bob = service.reader(accounts.person("alice")), service.reader(accounts.person("bob"))
    scope = alice.scope(["collection:hr"])
    assert scope is not None and scope.documents == {("docs", "hr/leave-policy.md"), ("docs", "hr/salaries.md")}
    with pytest.raises(ScopeError) as theirs:
        bob.scope(["collection:hr"])
    with pytest.raises(ScopeError) as absent:
        bob.scope(["collection:finance"])
    assert str(theirs.value).replace("hr", "finance") == str(absent.value)  # the same refusal
    admin = service.reader(accounts.person("root"))
    assert [c.name for c in admin.collections()] == ["hr", "legal"] and admin.scope(["collection:legal"]) is not None


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
    from rag.search.retrieval import LiveRetriever

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


# -- through the API and the page ------------------------------------------------------------------------------


@pytest.fixture
def team_service(team, monkeypatch):
    from service import Service
    from tests.fakes import FakeLLM

    settings, ingestor, accounts, alice, bob, docs = team
    settings.paths.docs_dir = docs
    monkeypatch.setattr("ingest.pipeline.build_ingestor", lambda s, progress=None: fake_ingestor(s)[0])
    monkeypatch.setattr("ingest.uploads.build_ingestor", lambda s, progress=None: fake_ingestor(s)[0])
    service = Service(settings, Retriever(ingestor.store, FakeEmbedder(), settings), lambda path: FakeLLM([]))
    return service, accounts


def reply(service, accounts, name, words):
    """Queue the fake model's reply for ``name`` asking QUESTION: the sentence of their passage holding ``words``."""
    from tests.fakes import sentence_holding

    scope = accounts.scope_for(accounts.person(name))
    number, _, sentence = sentence_holding(service.retriever, QUESTION, service.settings.retrieval.k, words, scope)
    service.model().replies.append(f'[{number}] "{sentence}"\nAnswer: {words}.')  # the loaded model's queue


def test_the_api_reads_as_the_holder_of_each_key(team_service, tmp_path):
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from api.server import create_app

    service, accounts = team_service
    service.settings.server.api_key = SecretStr("the-shared-key")  # one person's key: not a person's, with accounts
    client = TestClient(create_app(service))
    keys = {name: accounts.new_key(name)[1] for name in ("alice", "bob")}

    def as_(name, method, url, **kw):
        return client.request(method, url, headers={"Authorization": f"Bearer {keys[name]}"}, **kw)

    assert client.get("/v1/documents").status_code == 401
    shared = client.get("/v1/documents", headers={"Authorization": "Bearer the-shared-key"})
    assert shared.status_code == 401
    assert as_("alice", "GET", "/v1/me").json() == {"name": "alice", "role": "member", "collections": ["hr"]}
    listed = {d["source"] for d in as_("alice", "GET", "/v1/documents").json()["data"]}
    assert listed == {"hr/leave-policy.md", "hr/salaries.md"}

    chat = {"messages": [{"role": "user", "content": QUESTION}]}
    reply(service, accounts, "alice", "16 weeks")
    mine = as_("alice", "POST", "/v1/chat/completions", json=chat).json()
    assert mine["found"] and {s["file"].split("/")[0] for s in mine["sources"]} == {"hr"}
    reply(service, accounts, "bob", "20 weeks")
    theirs = as_("bob", "POST", "/v1/chat/completions", json=chat).json()
    assert {s["file"].split("/")[0] for s in theirs["sources"]} == {"legal"}
    # asking in another's document: the same refusal as a document that does not exist
    named = as_("alice", "POST", "/v1/chat/completions", json={**chat, "filter": {"sources": ["legal/leave-memo.md"]}})
    absent = as_("alice", "POST", "/v1/chat/completions", json={**chat, "filter": {"sources": ["legal/none.md"]}})
    assert named.status_code == absent.status_code == 400
    assert named.json()["error"]["message"].replace("leave-memo", "none") == absent.json()["error"]["message"]

    # another's document, chunk, page or conversation: 404 as for what does not exist
    memo = theirs["sources"][0]
    for url in (
        f"/v1/documents/{memo['file']}/pages/1.png",
        f"/v1/documents/{memo['file']}/pages/1.png?highlight={memo['chunk_id']}",
        f"/v1/conversations/{theirs['conversation_id']}",
        "/v1/documents/legal/nothing-here.md/pages/1.png",
    ):
        assert as_("alice", "GET", url).status_code == 404, url
    assert as_("alice", "DELETE", f"/v1/documents/{memo['file']}").status_code == 404
    assert as_("alice", "DELETE", f"/v1/conversations/{theirs['conversation_id']}").status_code == 404
    assert [c["id"] for c in as_("alice", "GET", "/v1/conversations").json()["data"]] == [mine["conversation_id"]]
    assert {d["source"] for d in as_("bob", "GET", "/v1/documents").json()["data"]} == {
        "legal/leave-memo.md",
        "legal/contract.md",
    }, "bob's documents are all still there"

    # uploads go into a collection the person reads; another's is refused before anything is saved
    files = {"files": ("memo-2.md", b"# Memo 2\n\nParental leave can be taken in two parts.", "text/markdown")}
    refused = as_("alice", "POST", "/v1/documents", files=files, data={"collection": "legal"})
    assert refused.status_code == 403
    added = as_("alice", "POST", "/v1/documents", files=files, data={"collection": "hr"})
    assert added.status_code == 200 and added.json()["ingest"]["added"] == ["hr/memo-2.md"]
    assert "hr/memo-2.md" in {d["source"] for d in as_("alice", "GET", "/v1/documents").json()["data"]}
    assert "hr/memo-2.md" not in {d["source"] for d in as_("bob", "GET", "/v1/documents").json()["data"]}

    # a key revoked mid-conversation: the next request is refused
    [(ident, *_)] = accounts.keys("bob")
    accounts.revoke_key(ident)
    follow = {**chat, "conversation_id": theirs["conversation_id"]}
    assert as_("bob", "POST", "/v1/chat/completions", json=follow).status_code == 401


def login_page(service, name=None, password=PASSWORD):
    import streamlit.testing.v1 as streamlit_testing

    from tests.conftest import REPO

    at = streamlit_testing.AppTest.from_file(str(REPO / "ui" / "app.py"), default_timeout=60)
    at.session_state["service"] = service
    at.session_state["language"] = "en"
    at.run()
    if name is not None:
        at.text_input(key="login_name").set_value(name)
        at.text_input(key="login_password").set_value(password)
        at.button[0].click().run()
    return at


def sidebar_text(at) -> str:
    return " ".join(m.value for m in at.sidebar.markdown).replace("\\", "")


def test_the_page_asks_for_a_login_and_shows_each_person_their_own(team_service):
    service, accounts = team_service
    at = login_page(service)
    assert not at.exception and not at.chat_input and len(at.text_input) == 2  # the login form only
    wrong = login_page(service, "alice", "not the password")
    assert "wrong name or password" in wrong.error[0].value and not wrong.chat_input
    at = login_page(service, "alice")
    assert not at.exception and at.chat_input
    assert "hr/leave-policy.md" in sidebar_text(at) and "legal/" not in sidebar_text(at)
    assert "Signed in as alice (member)" in " ".join(c.value for c in at.sidebar.caption).replace("\\", "")
    reply(service, accounts, "alice", "16 weeks")
    at.chat_input[0].set_value(QUESTION).run()
    sources = [e.label for e in at.expander if e.label.startswith("\\[")]
    assert sources and all("hr/" in label for label in sources)
    # the session ends (a password reset): the next run shows the form again
    accounts.reset("alice", "a brand new password")
    at.run()
    assert not at.chat_input and "session has ended" in at.info[0].value
    # bob sees his own, and no team panel (members); alice's conversation, named in his URL, is not found
    [theirs] = service.conversations.list("alice")
    at = login_page(service, "bob")
    at.query_params["c"] = theirs.id
    at.run()
    assert "cannot be opened" in at.error[0].value and not [e for e in at.expander if e.label.startswith("\\[")]
    assert "legal/leave-memo.md" in sidebar_text(at) and "hr/" not in sidebar_text(at)
    assert not [e for e in at.sidebar.expander if "Team" in e.label]
    at.button(key="logout").click().run()
    assert not at.chat_input


def test_an_admin_manages_the_team_from_the_page(team_service):
    service, accounts = team_service
    at = login_page(service, "root")
    assert not at.exception
    assert "legal/leave-memo.md" in sidebar_text(at) and "hr/salaries.md" in sidebar_text(at)  # everything
    [team] = [e for e in at.sidebar.expander if "Team" in e.label]
    at.text_input(key="new_person").set_value("carol")
    at.text_input(key="new_person_password").set_value(PASSWORD)
    next(b for b in at.button if b.label == "Add").click().run()
    assert not at.exception and accounts.person("carol").role == "member"
    hr = accounts.collection("hr")
    at.multiselect(key=f"readers-{hr.id}").set_value(["alice", "carol"]).run()
    assert set(accounts.collection("hr").readers) == {"alice", "carol"}
    assert [d.source for d in service.reader(accounts.person("carol")).documents()] == [
        "hr/leave-policy.md",
        "hr/salaries.md",
    ]


def test_the_audit_trail_keeps_questions_sources_opens_and_refusals(team_service):
    import json

    from fastapi.testclient import TestClient

    from api.server import create_app

    service, accounts = team_service
    client = TestClient(create_app(service))
    key = accounts.new_key("alice")[1]
    auth = {"Authorization": f"Bearer {key}"}
    reply(service, accounts, "alice", "16 weeks")
    body = {"messages": [{"role": "user", "content": QUESTION}], "store": False}
    answer = client.post("/v1/chat/completions", json=body, headers=auth).json()
    assert client.get("/v1/documents", headers={"Authorization": "Bearer sk-sourcier-guess"}).status_code == 401
    with pytest.raises(AccessError):
        service.login("bob", "not his password", "192.0.2.4")
    service.reader(accounts.person("alice")).surroundings(
        next(p for p in service.retriever.search(QUESTION, 5, accounts.scope_for(accounts.person("alice"))))
    )
    trail = [json.loads(line) for line in (service.settings.paths.store_dir / "audit.jsonl").read_text().splitlines()]
    asked = next(e for e in trail if e["event"] == "ask")
    assert asked["person"] == "alice" and asked["question"] == QUESTION and asked["conversation"] is None
    assert [s["file"] for s in asked["sources"]] == [s["file"] for s in answer["sources"]]
    assert asked["sources"][0]["cited"] is True
    assert any(e["event"] == "key refused" and e["path"] == "/v1/documents" for e in trail)
    assert any(e["event"] == "login refused" and e["name"] == "bob" and e["address"] == "192.0.2.4" for e in trail)
    assert any(e["event"] == "open" and e["person"] == "alice" for e in trail)
    assert key not in json.dumps(trail) and PASSWORD not in json.dumps(trail)
    assert stat.S_IMODE(os.stat(service.settings.paths.store_dir / "audit.jsonl").st_mode) == 0o600


def test_the_audit_trail_rotates_and_two_writers_share_it(tmp_path):
    from rag.audit import AuditLog

    page, api = AuditLog(tmp_path / "audit.jsonl", max_bytes=2000, keep=3), AuditLog(tmp_path / "audit.jsonl", 2000, 3)
    for i in range(60):
        (page if i % 2 else api).record("ask", "alice", question=f"question {i:02d} " + "x" * 40)
    kept = list(page.entries())
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "audit.jsonl",
        "audit.jsonl.1",
        "audit.jsonl.2",
        "audit.jsonl.3",
    ]
    numbers = [int(e["question"].split()[1]) for e in kept]
    assert numbers == sorted(numbers) and numbers[-1] == 59 and len(numbers) < 60  # the oldest rotated away
    assert all(p.stat().st_size <= 2000 for p in tmp_path.iterdir())
    assert [e["question"][:11] for e in page.last(2, "alice")] == ["question 58", "question 59"]


def test_the_audit_trail_can_be_turned_off(team, monkeypatch):
    from service import Service

    settings, ingestor, accounts, alice, *_ = team
    settings.server.audit = False
    service = Service(settings, Retriever(ingestor.store, FakeEmbedder(), settings), lambda path: None)
    service.reader(alice).record("open", file="x")
    service.login("alice", PASSWORD, "127.0.0.1")
    assert not (settings.paths.store_dir / "audit.jsonl").exists()


def test_the_admin_reads_the_audit_trail(team, capsys):
    from admin.__main__ import main
    from rag.audit import AuditLog

    settings = team[0]
    AuditLog.of_store(settings.paths.store_dir).record("ask", "alice", question="Who signs the contract?", sources=[])
    store = ["--store", str(settings.paths.store_dir)]
    assert main([*store, "collections", "grant", "hr", "bob"]) == 0
    capsys.readouterr()
    assert main([*store, "audit", "--last", "5"]) == 0
    out = capsys.readouterr().out
    assert "alice" in out and "Who signs the contract?" in out and "collections grant" in out
    assert main([*store, "audit", "--user", "alice", "--json"]) == 0
    assert json_lines(capsys.readouterr().out)[0]["question"] == "Who signs the contract?"


def json_lines(text: str) -> list[dict]:
    import json

    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_no_address_beyond_this_machine_without_accounts(tmp_path, monkeypatch, capsys):
    from api.__main__ import main as api_main
    from rag.accounts import check_exposure, is_loopback
    from ui.__main__ import main as page_main

    settings = make_settings(tmp_path)
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.20") and not is_loopback("")
    check_exposure("127.0.0.1", settings.paths.store_dir, "the page")  # fine
    with pytest.raises(AccessError, match="sourcier users add NAME --admin"):
        check_exposure("0.0.0.0", settings.paths.store_dir, "the page")
    check_exposure("0.0.0.0", settings.paths.store_dir, "the API", key_set=True)  # one person's key
    monkeypatch.setenv("SOURCIER_PATHS__STORE_DIR", str(settings.paths.store_dir))
    monkeypatch.setenv("SOURCIER_SERVER__PAGE_ADDRESS", "0.0.0.0")
    monkeypatch.setattr("os.execv", lambda *a: pytest.fail("the page must not start"))
    assert page_main([]) == 2 and "the page would listen on 0.0.0.0" in capsys.readouterr().err
    assert api_main(["--host", "10.1.2.3"]) == 2 and "the API would listen on 10.1.2.3" in capsys.readouterr().err
    # with an admin, the page may listen beyond (the API keeps its own address: 127.0.0.1)
    Accounts.of_store(settings.paths.store_dir).add("root", PASSWORD, "admin")
    check_exposure("0.0.0.0", settings.paths.store_dir, "the page")
    started = []
    monkeypatch.setattr("os.execv", lambda path, argv: started.append(argv))
    page_main([])
    assert started and started[0][started[0].index("--server.address") + 1] == "0.0.0.0"


@pytest.mark.parametrize("path", ["chroma filter", "overfetch"])
def test_each_way_of_holding_the_vector_search_finds_the_same_chunks(team, monkeypatch, path):
    import rag.search.store

    _, ingestor, accounts, alice, *_ = team
    store = ingestor.store
    scope = accounts.scope_for(alice)
    vector = FakeEmbedder().embed_query(QUESTION)
    exact = [h.chunk_id for h in store._query(vector, 2, scope)]  # Chroma's own where
    if path == "chroma filter":
        monkeypatch.setattr(rag.search.store, "OVERFETCH_MIN_SHARE", 1.1)  # never enough of the store to skip it
    asked = []
    real = store._query
    monkeypatch.setattr(store, "_query", lambda v, n, s, c=None: asked.append((n, s is not None)) or real(v, n, s, c))
    assert [h.chunk_id for h in store.nearest(vector, 2, scope)] == exact
    assert asked == {"chroma filter": [(2, True)], "overfetch": [(8, False)]}[path]  # 2 x 1.5 / (2 of 5 docs)


def test_an_overfetched_search_takes_the_same_work_whatever_the_others_hold(team, monkeypatch):
    """Too few of the hits in the person's collections: fewer are returned, and no second query is made (its
    time would tell that other collections hold passages close to the question)."""
    import rag.search.store

    _, ingestor, accounts, alice, *_ = team
    store = ingestor.store
    monkeypatch.setattr(rag.search.store, "OVERFETCH", 0.01)  # one hit asked: likely another's
    asked = []
    real = store._query
    monkeypatch.setattr(store, "_query", lambda v, n, s, c=None: asked.append(s is not None) or real(v, n, s, c))
    for question in (QUESTION, "notice period contract", "salary grid March"):
        found = store.nearest(FakeEmbedder().embed_query(question), 2, accounts.scope_for(alice))
        assert len(found) <= 1 and all(h.chunk_id in store.ids_in(accounts.scope_for(alice)) for h in found)
    assert asked == [False, False, False]


def test_summaries_are_held_to_what_the_person_reads(team_service):
    from fastapi.testclient import TestClient

    from api.server import create_app

    service, accounts = team_service
    client = TestClient(create_app(service))
    key = accounts.new_key("alice")[1]

    def as_alice(method, url, **kw):
        return client.request(method, url, headers={"Authorization": f"Bearer {key}"}, **kw)

    service.model().replies.append("- Parental leave lasts 16 weeks at full pay. (p. 0)")
    mine = as_alice("POST", "/v1/documents/hr/leave-policy.md/summary", json={})
    assert mine.status_code == 200 and "16 weeks" in mine.json()["summary"]["points"][0]["text"]
    for url in ("/v1/documents/legal/leave-memo.md/summary", "/v1/documents/legal/none.md/summary"):
        assert as_alice("POST", url, json={}).status_code == 404, url  # another's: as absent
    assert as_alice("POST", "/v1/compare", json={"first": "hr/leave-policy.md", "second": "legal/contract.md"}
                    ).status_code == 404  # fmt: skip
    # a question naming another's document is not summarised from it (the usual path: her passages only)
    service.model().replies.append("NONE")
    asked = as_alice("POST", "/v1/chat/completions", json={"messages": [{"role": "user", "content":
                     "Summarise the contract template"}]}).json()  # fmt: skip
    assert asked["summary"] is None and all(s["file"].startswith(("hr/", "public/")) for s in asked["sources"])
