"""The reranking stage with a fake scorer: which candidates it sees, the order it gives, the decline gate;
and the rule that a citation-only sentence gives its citations to the sentence before it."""

from __future__ import annotations

import pytest

from rag.answering.answer import NOT_FOUND, Answerer
from rag.answering.citations import attach_filler_citations, check_citations, is_filler
from rag.errors import ModelFileError
from rag.search.rerank import load_reranker
from rag.search.retrieval import Retriever
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor


class FakeScorer:
    """Relevance = share of the question's words found in the passage (records what it was given)."""

    name = "fake"

    def __init__(self, fixed: float | None = None) -> None:
        self.calls: list[tuple[str, list[str]]] = []
        self.fixed = fixed

    def score(self, question, passages):
        self.calls.append((question, list(passages)))
        words = set(question.lower().split())
        if self.fixed is not None:
            return [self.fixed] * len(passages)
        return [len(words & set(p.lower().split())) / max(len(words), 1) for p in passages]


@pytest.fixture
def store(settings, corpus):
    fake_ingestor(settings)[0].run([corpus])
    settings.retrieval.min_similarity = 0.0
    return fake_ingestor(settings)[0].store


def test_the_reranker_scores_the_candidates_in_one_batch_and_keeps_the_best_k(settings, store):
    settings.retrieval.candidates_for_rerank = 12
    scorer = FakeScorer()
    passages = Retriever(store, FakeEmbedder(), settings, scorer).search("storage outage minutes", k=4)
    assert len(scorer.calls) == 1 and len(scorer.calls[0][1]) == 12  # all candidates, one call
    assert len(passages) == 4
    scores = [p.rerank_score for p in passages]
    assert scores == sorted(scores, reverse=True) and all(s is not None for s in scores)
    best_of_all = max(FakeScorer().score("storage outage minutes", scorer.calls[0][1]))
    assert scores[0] == pytest.approx(best_of_all)


def test_candidates_are_the_hybrid_ranking_and_k_above_them_widens_the_pool(settings, store):
    settings.retrieval.candidates_for_rerank = 5
    hybrid = Retriever(store, FakeEmbedder(), settings).search("storage outage minutes", k=5)
    scorer = FakeScorer()
    Retriever(store, FakeEmbedder(), settings, scorer).search("storage outage minutes", k=5)
    # the reranker reads each candidate as it is searched: its context header (document, section), then its text
    assert scorer.calls[0][1] == [f"{p.context}\n\n{p.text}" for p in hybrid]
    assert all(p.context.startswith("incident postmortem") for p in hybrid if p.source == "incident-postmortem.md")
    Retriever(store, FakeEmbedder(), settings, scorer).search("storage outage minutes", k=8)
    assert len(scorer.calls[1][1]) == 8  # never fewer candidates than passages asked for


def test_without_a_reranker_the_fused_order_is_kept(settings, store):
    passages = Retriever(store, FakeEmbedder(), settings).search("storage outage minutes", k=5)
    assert all(p.rerank_score is None for p in passages)
    assert [p.score for p in passages] == sorted((p.score for p in passages), reverse=True)


def test_ties_keep_the_fused_order(settings, store):
    hybrid = Retriever(store, FakeEmbedder(), settings).search("storage outage minutes", k=6)
    reranked = Retriever(store, FakeEmbedder(), settings, FakeScorer(fixed=0.5)).search("storage outage minutes", k=6)
    assert [p.chunk_id for p in reranked] == [p.chunk_id for p in hybrid]


def test_a_low_best_relevance_declines_before_the_model(settings, store):
    settings.retrieval.min_rerank_score = 0.3
    llm = FakeLLM(["should not be used"])
    answerer = Answerer(settings, Retriever(store, FakeEmbedder(), settings, FakeScorer(fixed=0.1)), llm)
    answer = answerer.answer("How long did the storage outage last?")
    assert not answer.found and answer.text == NOT_FOUND["en"] and llm.prompts == []
    assert answer.sources and all(s.passage.rerank_score == 0.1 for s in answer.sources)


def test_a_relevant_best_passage_reaches_the_model(settings, store):
    settings.retrieval.min_rerank_score = 0.3
    llm = FakeLLM(["It lasted 47 minutes [1]."])
    answerer = Answerer(settings, Retriever(store, FakeEmbedder(), settings, FakeScorer(fixed=0.9)), llm)
    assert answerer.answer("How long did the storage outage last?").found and len(llm.prompts) == 1


def test_reranker_none_loads_nothing_and_a_bad_path_is_a_clear_error(settings, tmp_path):
    settings.retrieval.reranker = "none"
    assert load_reranker(settings) is None
    settings.retrieval.reranker = "ms-marco-minilm"
    settings.retrieval.reranker_path = tmp_path / "nowhere"
    with pytest.raises(ModelFileError, match="reranker_path is not a folder"):
        load_reranker(settings)
    empty = tmp_path / "onnx"
    empty.mkdir()
    (empty / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(ModelFileError, match="tokenizer.json"):
        load_reranker(
            settings.model_copy(update={"retrieval": settings.retrieval.model_copy(update={"reranker_path": empty})})
        )


# -- citation-only sentences ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("It lasted 47 minutes. Citez [3][4].", "It lasted 47 minutes [3][4]."),
        ("It lasted 47 minutes.\nSources: [1]", "It lasted 47 minutes [1]."),
        ("Deux jours par semaine. Voir [1].", "Deux jours par semaine [1]."),
        ("3 jours par semaine. C'est mentionné dans le passage [2][1].", "3 jours par semaine [2][1]."),
        ("Il reçoit Montepeloso. C'est le passage [2] qui cite cette information.", "Il reçoit Montepeloso [2]."),
        ("It took 47 minutes. This is stated in passage [1].", "It took 47 minutes [1]."),
        ("It is 170 euros. This information can be found in Passage [1].", "It is 170 euros [1]."),
        ("A is true [1]. [2][3]. B is false.", "A is true [1][2][3]. B is false."),
        ("Sources: [1]", "Sources: [1]"),  # nothing before it to give the citation to
        ("It lasted 47 minutes [1].", "It lasted 47 minutes [1]."),
    ],
)
def test_a_citation_only_sentence_gives_its_citations_to_the_sentence_before(text, expected):
    assert attach_filler_citations(text) == expected


def test_filler_sentences_are_only_markers_and_empty_words():
    assert is_filler("[2][3].") and is_filler("Citez [3][4].") and is_filler("Sources : [1]")
    assert not is_filler("Le compost [2].") and not is_filler("Sources vary.")


def test_the_checker_judges_a_fillers_citations_against_the_claim():
    passages = ["nothing here", "compost needs air", "The storage outage lasted 47 minutes."]
    report = check_citations("The outage lasted 47 minutes. Citez [3][2].", passages)
    assert report.text == "The outage lasted 47 minutes [3][2]."
    verdicts = {c.number: c.supported for c in report.citations}
    assert verdicts == {3: True, 2: False}
    assert all(c.sentence == "The outage lasted 47 minutes [3][2]." for c in report.citations)
