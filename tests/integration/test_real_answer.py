"""Answers from the real default model (Qwen2.5-Coder-1.5B) over the real sample store."""

from __future__ import annotations

import json

import pytest

from rag.answering.answer import build_answerer, detect_language
from rag.settings import PathSettings, Settings
from rag.text import UNDETERMINED, text_language
from tests.conftest import REPO, SAMPLE_DATA
from tests.integration.test_real_ingest import cli

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    store = tmp_path_factory.mktemp("answers") / "store"
    assert cli("ingest", str(SAMPLE_DATA), "--store", str(store), "-q").returncode == 0
    assert cli("rag", "model").returncode == 0
    return store


@pytest.fixture(scope="module")
def answerer(store_dir):
    return build_answerer(Settings(paths=PathSettings(store_dir=store_dir)))


def test_an_answerable_question_cites_a_passage_that_holds_the_answer(answerer):
    answer = answerer.answer("How long did the storage outage last?")
    assert answer.found and "47" in answer.text, answer.text
    assert any("47 minutes" in s.passage.text for s in answer.cited_sources), answer.display_text
    assert all(s.supported for s in answer.cited_sources)
    assert all(1 <= c.number <= len(answer.sources) for c in answer.citations)
    assert answer.timings.first_token_ms and answer.timings.prompt_tokens > 0
    assert answer.timings.cached_tokens is not None and answer.timings.cached_tokens < answer.timings.prompt_tokens
    _assert_verbatim_quote(answer)
    assert "47" in answer.quote.text


def test_a_french_question_gets_a_french_answer_from_the_french_document(answerer):
    answer = answerer.answer("Combien de jours par semaine peut-on télétravailler ?")
    assert answer.found and detect_language(answer.text) == "fr", answer.display_text
    assert any(s.passage.source == "politique-teletravail.pdf" for s in answer.cited_sources), answer.display_text
    _assert_verbatim_quote(answer)


CROSSLINGUAL = [json.loads(line) for line in (REPO / "evaluation" / "crosslingual" / "samples.jsonl").open()]


@pytest.mark.parametrize("case", CROSSLINGUAL, ids=[c["question"][:40] for c in CROSSLINGUAL])
def test_a_question_in_the_other_language_is_answered_from_the_right_document(answerer, case):
    """The six sample questions asked in the other language: translated by the model, searched in both (and by
    the chunks' multilingual vectors), the expected document cited, the answer in the question's language (issue 37)."""
    assert answerer.retriever.searches_crosslingual  # the ingest kept each chunk's multilingual vector too
    answer = answerer.answer(case["question"])
    assert answer.translations and answer.timings.translate_ms, answer.translations
    assert answer.found and answer.cited_sources, (answer.translations, answer.display_text)
    assert answer.cited_sources[0].passage.source == case["document"], answer.display_text
    # in the question's language, or in none ("47 minutes [1]": figures and names show no language)
    assert text_language(answer.text) in (detect_language(case["question"]), UNDETERMINED), answer.display_text


def _assert_verbatim_quote(answer):
    """The quote is word for word in the passage it cites, and that passage is the cited source."""
    quote = answer.quote
    assert quote is not None and quote.verbatim, answer.display_text
    (cited,) = answer.cited_sources
    assert cited.number == quote.number
    assert len(cited.passage.text[quote.start : quote.end]) >= len(quote.text) * 0.8


@pytest.mark.parametrize(
    "question", ["Quel est le salaire du directeur général ?", "What is the capital of Australia?"]
)
def test_a_question_the_documents_cannot_answer_is_declined(answerer, question):
    answer = answerer.answer(question)
    assert not answer.found, answer.text
    assert detect_language(answer.text) == detect_language(question)


def test_cli_ask_json(store_dir):
    out = cli("rag", "--store", str(store_dir), "ask", "--json", "What is the hotel cap per night in Paris?")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert "170" in data["text"] and data["cited"] and data["sources"][data["cited"][0] - 1]["cited"]


def test_a_question_asked_in_one_document_is_answered_from_it_alone(store_dir):
    out = cli(
        "rag",
        "--store",
        str(store_dir),
        "ask",
        "--json",
        "--in",
        "politique-teletravail.pdf",
        "What is the monthly allowance?",
    )
    assert out.returncode in (0, 1), out.stderr
    answer = json.loads(out.stdout)
    assert answer["sources"] and {s["file"] for s in answer["sources"]} == {"politique-teletravail.pdf"}


def test_the_decoding_speed_levers_keep_the_models_choices(store_dir):
    """Issue 31: the grammar checked on the likeliest token first (llm.lazy_grammar) makes exactly the full
    grammar's choices; the quote drafted from the prompt (llm.draft_tokens) is evaluated in batches, the same
    logits up to float rounding: the same quote, and a short answer that may differ only at a near tie."""
    settings = Settings(paths=PathSettings(store_dir=store_dir))
    settings.llm.worker_process = False  # in this process: the model's drafts are read here
    answerer = build_answerer(settings)
    for question, facts in (
        ("How long did the storage outage last?", ("47",)),
        ("What is the hotel cap per night in Paris?", ("170",)),
        ("Combien de jours par semaine peut-on télétravailler ?", ("trois", "3")),
    ):
        settings.llm.draft_tokens, settings.llm.lazy_grammar = 0, False
        plain = answerer.answer(question)
        settings.llm.lazy_grammar = True
        lazy = answerer.answer(question)
        settings.llm.draft_tokens = 8
        drafted = answerer.answer(question)
        assert lazy.display_text == plain.display_text, question
        assert plain.quote is not None and answerer.llm.last_drafts.drafted > 0, question
        assert drafted.quote == plain.quote, question
        assert any(f in drafted.text.lower() for f in facts) and any(f in plain.text.lower() for f in facts)
