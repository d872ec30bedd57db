"""The page with Streamlit's AppTest: a real store in tmp, a fake embedder and a fake model."""

from __future__ import annotations

import pytest

from rag.answering.summary import SECTION_TOKENS, document_pages, sections_of
from rag.search.retrieval import Retriever
from service import Service
from tests.conftest import REPO
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor, sentence_holding
from ui.render import highlighted, plain

streamlit_testing = pytest.importorskip("streamlit.testing.v1")
APP = str(REPO / "ui" / "app.py")


@pytest.fixture
def service(settings, corpus):
    settings.paths.docs_dir = corpus
    settings.retrieval.min_similarity = 0.0
    fake_ingestor(settings)[0].run([corpus])
    replies: list[str] = []

    def load_model(path):
        return FakeLLM(replies)

    svc = Service(settings, Retriever(fake_ingestor(settings)[0].store, FakeEmbedder(), settings), load_model)
    svc.replies = replies  # tests queue the fake model's answers here
    return svc


def page(service, language="en"):
    at = streamlit_testing.AppTest.from_file(APP, default_timeout=60)
    at.session_state["service"] = service
    at.session_state["language"] = language
    return at.run()


def ask(at, question):
    at.chat_input[0].set_value(question).run()
    return at


def open_source(at, number, turn=1):
    """Open a source of the answer of that turn (its content runs only while it is open)."""
    at.session_state[f"src-0-{turn}-{number}"] = True
    return at.run()


def test_the_page_lists_the_documents_and_the_store_state(service):
    at = page(service)
    assert not at.exception
    assert at.title[0].value == "Ask your documents"
    sidebar_text = " ".join(m.value for m in at.sidebar.markdown)
    for name in ("politique-teletravail.pdf", "travel-expenses.docx", "incident-postmortem.html"):
        assert name in sidebar_text.replace("\\", "")
    assert "5 documents" in at.sidebar.caption[0].value


def test_an_answer_shows_its_numbered_sources_cited_and_uncited(service):
    service.replies.append("The outage lasted 47 minutes [1].")
    at = ask(page(service), "How long did the storage outage last? outage minutes")
    assert not at.exception
    messages = at.chat_message
    assert [m.name for m in messages] == ["user", "assistant"]
    labels = [e.label for e in at.expander if e.label.startswith("\\[")]
    assert labels and "cited" in labels[0] and all("not cited" in label for label in labels[1:])
    # the question and its answer are kept for the session and shown again after a rerun
    at.run()
    assert [m.name for m in at.chat_message] == ["user", "assistant"]
    assert "47 minutes" in " ".join(md.value for md in at.chat_message[1].markdown)


def test_not_found_is_shown_as_such(service):
    service.settings.retrieval.min_similarity = 1.0  # nothing can pass: declined before the model
    at = ask(page(service), "What is the capital of Australia?")
    assert not at.exception
    assert at.info and at.info[0].value == "Not found in the documents"


def test_new_conversation_clears_the_history(service):
    service.replies.append("Paris [1].")
    at = ask(page(service), "outage minutes")
    at.button[0].click().run()
    assert not at.chat_message


def test_the_interface_speaks_french(service):
    at = page(service, language="fr")
    assert at.title[0].value == "Interrogez vos documents"


def test_a_follow_up_gets_the_conversation_as_history(service):
    service.replies.extend(["It lasted 47 minutes [1].", "It started at night [1]."])
    at = ask(page(service), "How long did the storage outage last?")
    ask(at, "and when did it start?")
    model = service.model()
    assert "How long did the storage outage last?" in model.prompts[1].text


def test_a_model_that_cannot_load_is_an_error_on_the_page(service):
    from rag.errors import ModelFileError

    def broken(path):
        raise ModelFileError("model file not found: /nowhere.gguf (run python -m rag model)")

    service._load_model = broken
    at = ask(page(service), "outage minutes")
    assert at.error and "model file not found" in at.error[0].value


def test_document_text_is_shown_literally():
    text = "<script>alert(1)</script> **bold** [link](http://x) :red[x]"
    shown = plain(text)
    assert "<script>" not in shown and "\\<script\\>" in shown and "\\*\\*bold\\*\\*" in shown
    assert highlighted("a 47 minutes b", [(2, 12)]) == "a :orange-background[47 minutes] b"


def test_markup_in_an_answer_is_shown_as_text(service):
    service.replies.append("See ![x](http://203.0.113.9/leak.png) <img src=x onerror=alert(1)> [1].")
    at = ask(page(service), "outage minutes")
    shown = " ".join(md.value for md in at.chat_message[1].markdown)
    assert "\\!\\[x\\]\\(http\\:" in shown and "\\<img" in shown


def test_a_quoted_answer_shows_its_quote_highlighted_and_warns_in_french(service):
    question = "Combien de minutes a duré la panne de stockage ? outage minutes"
    number, _, sentence = sentence_holding(service.retriever, question, service.settings.retrieval.k, "47 minutes")
    service.replies.append(f'[{number}] "{sentence}"\nAnswer: La panne a duré 45 minutes.')
    at = ask(page(service, language="fr"), question)
    assert not at.exception
    shown = " ".join(md.value for md in at.chat_message[1].markdown)
    assert "«" in shown and "45 minutes" in shown
    assert [w.value for w in at.warning] == [
        "La réponse ne correspond peut-être pas à sa source : le nombre 45 n'est pas dans la citation."
    ]
    open_source(at, number)
    cited = next(e for e in at.expander if e.label.startswith(f"\\[{number}"))
    assert any(":orange-background[" in md.value and "47 minutes" in md.value for md in cited.markdown)


def test_an_opened_pdf_source_shows_its_page_with_the_passage_highlighted(service):
    question = "Quelle est l'indemnité forfaitaire mensuelle de télétravail ? euros connexion"
    number, passage, sentence = sentence_holding(service.retriever, question, service.settings.retrieval.k, "25 euros")
    assert passage.source == "politique-teletravail.pdf"
    service.replies.append(f'[{number}] "{sentence}"\nAnswer: 25 euros par mois.')
    at = open_source(ask(page(service), question), number)
    assert not at.exception
    cited = next(e for e in at.expander if e.label.startswith(f"\\[{number}"))
    [image] = [e for e in cited.children.values() if e.type == "image"]
    assert f"page {passage.page}" in image.captions[0] and "highlighted" in image.captions[0]
    view = service.reader(None).page_view(passage.root, passage.source, passage.page, passage.text)
    assert view.boxes > 0  # the passage was found on the page and marked
    assert any("25 euros" in md.value for md in cited.markdown)  # and its text below the image
    others = [e for e in at.expander if e.label.startswith("\\[") and e is not cited]
    assert all(e.type != "image" for o in others for e in o.children.values())  # closed: nothing rendered


def test_a_closed_source_renders_nothing_and_a_text_source_shows_its_surroundings(service, monkeypatch):
    service.replies.append("The outage lasted 47 minutes [1].")
    at = ask(page(service), "How long did the storage outage last? outage minutes")
    [first] = [e for e in at.expander if e.label.startswith("\\[1\\]")]
    assert "incident" in first.label and not first.markdown  # closed: only its caption
    at = open_source(at, 1)
    assert not at.exception
    [first] = [e for e in at.expander if e.label.startswith("\\[1\\]")]
    shown = " ".join(md.value for md in first.markdown)
    assert ":gray[" in shown and "47 minutes" in shown  # the text around the passage, greyed


def test_questions_scoped_to_one_document_only_show_its_passages(service):
    at = page(service)
    at.sidebar.multiselect[0].set_value(["politique-teletravail.pdf"]).run()
    assert not at.exception
    assert any(":blue-badge[politique\\-teletravail\\.pdf]" in md.value for md in at.main.markdown)
    service.replies.append("[1] x")
    at = ask(at, "How long did the storage outage last? outage minutes")
    assert not at.exception
    labels = [e.label for e in at.expander if e.label.startswith("\\[")]
    assert labels and all("politique\\-teletravail\\.pdf" in label for label in labels)
    at.sidebar.multiselect[0].set_value([]).run()  # back to all documents
    assert any(":gray-badge[all documents]" in md.value for md in at.main.markdown)


def test_the_documents_cards_are_listed_and_an_answer_says_where_it_searched_with_a_way_to_widen(service, corpus):
    for year, revenue in ((2021, 455), (2022, 502)):
        (corpus / f"ACME_{year}_10K.txt").write_text(
            f"Acme annual report, fiscal {year}. Total revenue for fiscal {year} was {revenue} million dollars."
        )
    fake_ingestor(service.settings)[0].run([corpus])
    at = page(service)
    sidebar_text = " ".join(m.value for m in at.sidebar.markdown).replace("\\", "")
    assert "Acme, annual report, FY2021" in sidebar_text and "bird survey, 2024" in sidebar_text
    service.replies += ["Revenue was 455 million [1].", "Revenue was 455 million [1]."]  # asked, then again
    at = ask(at, "What was Acme's total revenue for fiscal 2021?")
    assert not at.exception
    captions = " ".join(c.value for c in at.main.caption).replace("\\", "")
    assert "Searched in: Acme, annual report, FY2021 (ACME_2021_10K.txt)" in captions
    labels = [e.label for e in at.expander if e.label.startswith("\\[")]
    assert labels and all("ACME\\_2021\\_10K" in label for label in labels)
    widen = [b for b in at.main.button if b.label == "Ask again in every document"]
    widen[0].click().run()
    assert not at.exception
    assert [m.name for m in at.chat_message] == ["user", "assistant", "user", "assistant"]
    first, again = (m["answer"] for m in at.session_state["messages"] if m["role"] == "assistant")
    assert first.route["hard"] and again.route is None  # asked in every document: not routed again
    assert len({s.passage.source for s in again.sources}) > 1


def test_a_documents_button_summarises_it_and_two_chosen_documents_are_compared(service):
    at = page(service)
    buttons = [b for b in at.sidebar.button if b.key and b.key.startswith("sum-")]
    names = [d.source for d in service.documents()]
    service.replies += ["- The incident lasted 47 minutes. (p. 0)"] * 6
    buttons[names.index("incident-postmortem.html")].click().run()
    assert not at.exception
    asked = [m for m in at.session_state["messages"] if m["role"] == "assistant"][-1]
    assert asked["question"] == "Summarise incident-postmortem.html" and asked["answer"].summary["kind"] == "summary"
    captions = " ".join(c.value for c in at.main.caption).replace("\\", "")
    assert "Summary of incident-postmortem.html:" in captions
    at.sidebar.multiselect[0].set_value(["incident-postmortem.html", "compost-guide.md"]).run()
    replies = service.model().replies  # the loaded model's own queue (it copied the service's when it loaded)
    replies.clear()  # the incident's summary is kept: only the guide's sections and the comparison are written
    guide = next(d for d in service.documents() if d.source == "compost-guide.md")
    pages = document_pages(service.retriever.corpus, guide)
    sections = len(sections_of(pages, FakeLLM([]).prompter.count_tokens, SECTION_TOKENS))
    replies += ["- Compost needs air. (p. 0)"] * sections
    replies.append("* Time\nA: The incident lasted 47 minutes.\nB: not covered\n")
    [b for b in at.main.button if b.label == "Compare the two chosen documents"][0].click().run()
    assert not at.exception
    compared = [m for m in at.session_state["messages"] if m["role"] == "assistant"][-1]["answer"]
    assert compared.summary is not None, (compared.question, compared.text)
    assert compared.summary["kind"] == "compare" and compared.text.startswith("* Time")
