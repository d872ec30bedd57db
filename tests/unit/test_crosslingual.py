"""A question in one language about documents in another (issue 37): the chunk's language recorded at ingest,
the question translated by the model into the store's other languages, both searched and fused, each passage
reranked against the question in its own language; French-aware keyword terms kept current in old indexes."""

from __future__ import annotations

import json
import sqlite3

import pytest

from rag.answering.answer import Answerer
from rag.answering.crosslingual import languages_to_search, translate_question, translation_messages
from rag.search.keyword import INDEX_FILE, TERMS_VERSION, SqliteKeywordIndex
from rag.search.retrieval import Retriever
from rag.settings import LLMSettings
from rag.text import UNDETERMINED, detect_language, text_language
from tests.conftest import REPO, SAMPLE_DATA
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor
from tests.unit.test_rerank import FakeScorer

FRENCH = "Quel est le plafond d'hôtel par nuit à Paris ?"
ENGLISH = "What is the hotel cap per night in Paris?"


@pytest.fixture
def store(settings, corpus):
    """The sample documents (French and English) in a real store, fake embedder."""
    settings.retrieval.min_similarity = 0.0
    settings.llm.answerability_check = False
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([corpus])
    return ingestor.store


def test_the_store_knows_its_languages_from_what_the_ingest_recorded(store):
    languages = {meta["language"] for _, meta in store.iter_metadatas()}
    assert languages == {"en", "fr", UNDETERMINED}  # short chunks of names or figures do not tell
    assert store.languages() == {"en", "fr"}
    french = {meta["source"] for _, meta in store.iter_metadatas({"language": "fr"})}
    assert french == {"politique-teletravail.pdf", "compost-guide.md"}
    store.keywords, store._languages = None, None  # without the keyword index: asked of Chroma itself
    assert store.languages() == {"en", "fr"}


def test_questions_are_translated_only_into_the_other_languages_of_the_store():
    assert languages_to_search("fr", {"en", "fr"}) == ["en"]
    assert languages_to_search("fr", {"fr"}) == []
    assert languages_to_search("en", {"en"}) == []
    assert languages_to_search("en", None) == ["fr"]  # a store that cannot say: the other language


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        (f"Translation: {ENGLISH}", ENGLISH),
        (f"« {ENGLISH} »\nThe cap is 170 euros.", ENGLISH),  # quotes and a second line dropped
        ("", None),
        (FRENCH, None),  # unchanged
        ("Quel est le plafond pour une nuit d'hôtel à Paris ?", None),  # still French
        (ENGLISH + " " + "and more words " * 20, None),  # far longer than the question
        ("The hotel cap in Paris is 170 euros per night.", None),  # an answer, not the question
    ],
)
def test_a_translation_of_no_use_is_left_out(reply, expected):
    llm = FakeLLM([])
    llm.translations[FRENCH] = reply
    assert translate_question(llm, FRENCH, "en", LLMSettings()) == expected
    assert llm.translated == [FRENCH]
    system = translation_messages(FRENCH, "en")[0]["content"]
    assert "into English" in system and "Do not answer" in system


def test_a_french_question_finds_the_english_policy_through_its_translation(settings, store):
    scorer = FakeScorer()
    llm = FakeLLM(["The cap is 170 euros per night [1]."])
    llm.translations[FRENCH] = ENGLISH
    settings.retrieval.vector = False  # keyword search alone: the fake embedder knows no language
    answer = Answerer(settings, Retriever(store, FakeEmbedder(), settings, scorer), llm).answer(FRENCH)
    assert answer.translations == {"en": ENGLISH}
    assert answer.timings.translate_ms is not None and answer.timings.translate_ms >= 0
    assert answer.sources and answer.sources[0].passage.source == "travel-expenses.docx"
    # every passage was reranked against the question in its own language
    by_question = {asked: texts for asked, texts in scorer.calls}
    assert {detect_language(t) for t in by_question[ENGLISH]} == {"en"}
    assert any("hotel" in t.lower() for t in by_question[ENGLISH])
    assert all(text_language(t) != "en" for t in by_question.get(FRENCH, []))
    assert answer.language == "fr"


def test_a_question_in_the_only_language_of_the_store_is_not_translated(settings, tmp_path):
    corpus = tmp_path / "fr"
    corpus.mkdir()
    (corpus / "note.md").write_text(
        "# Note\n\nLe plafond d'hôtel est de 170 euros par nuit à Paris pour les salariés en mission.",
        encoding="utf-8",
    )
    settings.retrieval.min_similarity = 0.0
    settings.llm.answerability_check = False
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([corpus])
    assert ingestor.store.languages() == {"fr"}
    llm = FakeLLM(["170 euros [1]."])
    answer = Answerer(settings, Retriever(ingestor.store, FakeEmbedder(), settings), llm).answer(FRENCH)
    assert llm.translated == [] and answer.translations == {} and answer.timings.translate_ms is None


def test_an_index_written_with_the_old_terms_is_cut_again_once(settings, store):
    path = settings.paths.store_dir / INDEX_FILE
    index = store.keywords
    before = index.entries()
    with sqlite3.connect(path) as db:  # as an earlier version left it: plural-cut terms, no language, version 1
        db.execute("DELETE FROM stats WHERE key = 'terms_version'")
        db.execute("UPDATE chunk_docs SET language = NULL")
        db.execute("UPDATE terms SET body = body || ' hotels'")
    old = SqliteKeywordIndex(path)
    assert old.outdated() and old.ids_without_metadata() and old.lacks_metadata()
    retriever = Retriever(store, FakeEmbedder(), settings)
    retriever.keyword_index  # noqa: B018 - the first search's index: brought up to date
    again = SqliteKeywordIndex(path)
    assert not again.outdated() and again.entries() == before
    assert store.languages() == {"en", "fr"} and not again.ids_without_metadata() and not again.lacks_metadata()
    assert TERMS_VERSION == 2


def test_a_question_found_with_confidence_as_asked_is_not_translated(settings, store):
    """The store holds the question's language and the best passage found as asked is relevant enough
    (llm.translate_below): no translation, no second search."""
    llm = FakeLLM(["Deux jours [1].", "170 euros [1]."])
    llm.translations[FRENCH] = ENGLISH
    answer = Answerer(settings, Retriever(store, FakeEmbedder(), settings, FakeScorer(fixed=0.9)), llm).answer(FRENCH)
    assert llm.translated == [] and answer.translations == {} and answer.timings.translate_ms is None
    settings.llm.translate_below = 0.95  # the same passages are no longer enough
    answer = Answerer(settings, Retriever(store, FakeEmbedder(), settings, FakeScorer(fixed=0.9)), llm).answer(FRENCH)
    assert llm.translated == [FRENCH] and answer.translations == {"en": ENGLISH}


CROSSLINGUAL = REPO / "evaluation" / "crosslingual"
EVAL_DIR = REPO.parent / "shared" / "eval"


@pytest.mark.parametrize(
    ("name", "language", "source"),
    [("covid_qa_fr", "fr", "covid_qa/200423_covidQA.json"), ("piaf_en", "en", "piaf/piaf-v1.0.json")],
)
def test_the_crosslingual_sets_translate_questions_of_their_sets(name, language, source):
    rows = [json.loads(line) for line in (CROSSLINGUAL / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 40 and len({r["id"] for r in rows}) == 40
    assert sum(detect_language(r["question"]) == language for r in rows) >= 38, name
    if not (EVAL_DIR / source).exists():
        pytest.skip(f"{EVAL_DIR / source} is not on this machine")
    data = json.loads((EVAL_DIR / source).read_text(encoding="utf-8"))
    ids = {str(qa["id"]) for article in data["data"] for p in article["paragraphs"] for qa in p["qas"]}
    assert {r["id"] for r in rows} <= ids


def test_the_sample_questions_in_the_other_language_name_real_documents():
    rows = [json.loads(line) for line in (CROSSLINGUAL / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == 6
    for row in rows:
        assert (SAMPLE_DATA / row["document"]).exists()
        assert detect_language(row["question"]) != detect_language(row["original"])
