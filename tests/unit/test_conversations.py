"""Conversations kept in SQLite: saved as they go, reopened after a reload, renamed, exported, deleted for
real; sources of a reopened answer say when their document was since removed or changed."""

from __future__ import annotations

import stat

import pytest

from rag.answering.conversations import ConversationNotFound, ConversationStore, conversation_markdown
from rag.errors import StoreError
from tests.fakes import sentence_holding
from tests.unit.test_page import ask, page, service  # noqa: F401  (the page's fixture)

QUESTION = "How long did the storage outage last? outage minutes"


def answered(service, question=QUESTION, words="47 minutes", short="It lasted 47 minutes."):  # noqa: F811
    """An answer the way a model quoting the right passage gives it."""
    number, _, sentence = sentence_holding(service.retriever, question, service.settings.retrieval.k, words)
    service.model().replies.append(f'[{number}] "{sentence}"\nAnswer: {short}')  # the loaded model's queue
    return service.answerer(service.defaults()).answer(question)


def test_an_answer_is_kept_and_comes_back_equal(service, tmp_path):  # noqa: F811
    store = ConversationStore(tmp_path / "c.sqlite3")
    answer = answered(service)
    cid = store.create(answer.question, ["incident-postmortem.html"])
    assert store.add(cid, answer) == 0
    saved = store.get(cid)
    assert saved.answers == [answer]  # sources, spans, scores, timings, quote, citations: all of it
    assert saved.info.title == QUESTION and saved.info.turns == 1
    assert stat.S_IMODE((tmp_path / "c.sqlite3").stat().st_mode) == 0o600  # this user only


def test_list_rename_export_and_delete(service, tmp_path):  # noqa: F811
    store = ConversationStore(tmp_path / "c.sqlite3")
    first = store.create("first question")
    store.add(first, answered(service))
    second = store.create("second question")
    question = "Quelle est l'indemnité forfaitaire de télétravail ? euros connexion"
    store.add(second, answered(service, question, "25 euros", "Elle est de 25 euros par mois."))
    assert [c.id for c in store.list()] == [second, first]  # the most recent first
    store.rename(first, "  Storage   outage ")
    assert store.get(first).info.title == "Storage outage"
    with pytest.raises(StoreError, match="cannot be empty"):
        store.rename(first, "  ")
    markdown = conversation_markdown(store.get(first))
    assert markdown.startswith("# Storage outage")
    assert "## " + QUESTION in markdown and "47 minutes" in markdown
    assert "incident-postmortem.html" in markdown and "(cited)" in markdown
    store.delete(second)
    assert [c.id for c in store.list()] == [first]
    with pytest.raises(ConversationNotFound):
        store.get(second)
    with pytest.raises(ConversationNotFound):
        store.delete(second)
    store.close()
    on_disk = b"".join(p.read_bytes() for p in tmp_path.glob("c.sqlite3*"))
    assert "indemnité forfaitaire".encode() not in on_disk and b"25 euros par mois" not in on_disk  # really gone


def test_the_page_saves_the_conversation_and_a_reload_reopens_it(service):  # noqa: F811
    service.replies.append("The outage lasted 47 minutes [1].")
    at = ask(page(service), QUESTION)
    assert not at.exception
    [saved] = service.conversations.list()
    assert saved.title == QUESTION
    assert at.query_params["c"] in (saved.id, [saved.id])  # the URL names it: a reload or a bookmark returns
    reloaded = page_at(service, saved.id)  # a new browser session on the same URL
    assert not reloaded.exception
    assert [m.name for m in reloaded.chat_message] == ["user", "assistant"]
    assert "47 minutes" in " ".join(md.value for md in reloaded.chat_message[1].markdown)
    service.model().replies.append("Still 47 minutes [1].")
    reloaded = ask(reloaded, "And how long exactly? outage minutes")
    assert service.conversations.get(saved.id).info.turns == 2  # the follow-up joined the same conversation


def test_sources_of_a_reopened_answer_say_their_document_was_removed_or_changed(service):  # noqa: F811
    from tests.fakes import fake_ingestor

    service.replies.append("The outage lasted 47 minutes [1].")
    ask(page(service), QUESTION)
    [saved] = service.conversations.list()
    answer = service.conversations.get(saved.id).answers[0]
    assert set(service.reader(None).source_states(answer).values()) == {"kept"}
    cited = answer.cited_sources[0].passage
    docs = service.settings.paths.docs_dir
    (docs / cited.source).write_text("<html><body><p>Rewritten: no outage at all.</p></body></html>")
    fake_ingestor(service.settings)[0].run([docs])
    assert service.reader(None).source_states(answer)[answer.cited_sources[0].number] == "changed"
    (docs / cited.source).unlink()
    fake_ingestor(service.settings)[0].run([docs])
    assert service.reader(None).source_states(answer)[answer.cited_sources[0].number] == "removed"
    reopened = page_at(service, saved.id)
    labels = [e.label for e in reopened.expander if e.label.startswith("\\[")]
    assert any("no longer in the documents" in label for label in labels)


def page_at(service, conversation_id):  # noqa: F811
    from tests.unit.test_page import APP, streamlit_testing

    at = streamlit_testing.AppTest.from_file(APP, default_timeout=60)
    at.session_state["service"] = service
    at.session_state["language"] = "en"
    at.query_params["c"] = conversation_id
    return at.run()


def test_the_sidebar_renames_exports_and_deletes_the_conversation_shown(service):  # noqa: F811
    service.replies.append("The outage lasted 47 minutes [1].")
    at = ask(page(service), QUESTION)
    [saved] = service.conversations.list()
    at = page_at(service, saved.id)
    [export] = [b for b in at.sidebar.get("download_button") if "Markdown" in str(b.proto.label)]
    assert export.proto.label == "Export as Markdown"
    at.sidebar.text_input(key=f"title-{saved.id}").set_value("Storage outage, March").run()
    assert service.conversations.get(saved.id).info.title == "Storage outage, March"
    at.sidebar.button(key=f"del-{saved.id}").click().run()
    assert not at.exception
    assert service.conversations.list() == [] and not at.chat_message  # gone, and the page starts afresh
