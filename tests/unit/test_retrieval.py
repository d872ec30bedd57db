"""Hybrid retrieval over a real Chroma store (fake embedder): fusion, switches, French folding, provenance."""

from __future__ import annotations

import pytest

from rag.errors import SettingsError
from rag.search.keyword import MemoryKeywordIndex
from rag.search.retrieval import Retriever, reciprocal_rank_fusion
from rag.search.store import Hit
from rag.text import keyword_tokens
from tests.fakes import FakeEmbedder, fake_ingestor


@pytest.fixture
def retriever_for(settings, corpus):
    fake_ingestor(settings)[0].run([corpus])

    def make(**switches) -> Retriever:
        for key, value in switches.items():
            setattr(settings.retrieval, key, value)
        return Retriever(fake_ingestor(settings)[0].store, FakeEmbedder(), settings)

    return make


def test_rrf_rewards_agreement_between_searches():
    fused = reciprocal_rank_fusion([[Hit("a", 0, 1), Hit("b", 1, 1)], [Hit("b", 0, 9), Hit("c", 1, 9)]], k=60)
    assert [cid for cid, _ in fused] == ["b", "a", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


def test_rrf_weights_favour_one_search():
    rankings = [[Hit("a", 0, 1), Hit("b", 1, 1)], [Hit("c", 0, 9), Hit("a", 1, 9)]]
    assert [cid for cid, _ in reciprocal_rank_fusion(rankings, k=60)] == ["a", "c", "b"]
    weighted = reciprocal_rank_fusion(rankings, k=60, weights=[1.0, 0.2])
    assert [cid for cid, _ in weighted] == ["a", "b", "c"]
    assert weighted[2][1] == pytest.approx(0.2 / 61)


def test_keyword_terms_are_stemmed_in_their_language_then_folded():
    assert keyword_tokens("Les salariés télétravaillent à l'été") == ["salari", "teletravaillent", "ete"]
    assert keyword_tokens("The hotels of Paris") == ["hotel", "pari"]
    # elided articles fall out; French and English inflections meet their stem; accents go after stemming
    assert keyword_tokens("le plafond d'hôtel, les hôtels remboursés", "fr") == [
        "plafond", "hotel", "hotel", "rembours"
    ]  # fmt: skip
    assert keyword_tokens("reimbursed reimbursements", "en") == ["reimburs", "reimburs"]


def test_keyword_search_finds_accented_words_without_accents():
    index = MemoryKeywordIndex(["x", "y"], ["Pendant l'été, le compost chauffe.", "Hotel caps per night."])
    assert [cid for cid, _ in index.search("ete compost", 5)] == ["x"]
    assert index.search("unknownword", 5) == []


def test_hybrid_search_returns_ranked_passages_with_provenance(retriever_for):
    passages = retriever_for().search("indemnité forfaitaire internet électricité", k=3)
    assert len(passages) == 3 and passages[0].source == "politique-teletravail.pdf"
    assert passages[0].page == 2 and "25 euros" in passages[0].text
    assert passages[0].score >= passages[1].score >= passages[2].score
    assert passages[0].end > passages[0].start


def test_a_rare_exact_term_is_found_by_keywords(retriever_for):
    hybrid = retriever_for().search("Natarajan", k=3)
    assert "Natarajan" in hybrid[0].text


def test_switches_select_each_search(retriever_for):
    only_keywords = retriever_for(vector=False).search("Natarajan", k=3)
    assert "Natarajan" in only_keywords[0].text and only_keywords[0].similarity is None
    only_vectors = retriever_for(vector=True, keyword=False).search("Natarajan", k=3)
    assert all(p.similarity is not None for p in only_vectors)
    with pytest.raises(SettingsError, match="both off"):
        retriever_for(vector=False, keyword=False)


def test_empty_store_returns_nothing(settings):
    retriever = Retriever(fake_ingestor(settings)[0].store, FakeEmbedder(), settings)
    assert retriever.search("anything") == []


def test_asking_for_more_candidates_than_chunks_returns_them_all(settings, tmp_path):
    docs = tmp_path / "two"
    docs.mkdir()
    (docs / "a.txt").write_text("Herons nest in colonies.", encoding="utf-8")
    (docs / "b.txt").write_text("Owls hunt at night.", encoding="utf-8")
    store = fake_ingestor(settings)[0].store
    fake_ingestor(settings)[0].run([docs])
    hits = store.nearest(FakeEmbedder().embed_query("owls"), 30)
    assert len(hits) == 2 and [h.rank for h in hits] == [0, 1]


def test_a_chunk_deleted_between_search_and_fetch_is_skipped_and_replaced(settings, corpus):
    from rag.search.retrieval import Retriever
    from tests.fakes import FakeEmbedder, fake_ingestor

    ingestor = fake_ingestor(settings)[0]
    ingestor.run([corpus])
    store = ingestor.store
    retriever = Retriever(store, FakeEmbedder(), settings)
    before = retriever.search("storage outage minutes", k=4)
    gone = before[0].chunk_id
    real_records = store.records
    store.records = lambda ids, scope=None: {c: v for c, v in real_records(ids, scope).items() if c != gone}
    after = retriever.search("storage outage minutes", k=4)
    assert gone not in [p.chunk_id for p in after] and len(after) == 4
