"""Questions asked of chosen documents: both searches are held to the scope before fusion and reranking."""

from __future__ import annotations

import pytest

from rag.search.retrieval import Retriever
from rag.search.scope import Scope, ScopeError, resolve_scope
from rag.search.store import chroma_where
from tests.conftest import make_settings
from tests.fakes import FakeEmbedder, fake_ingestor

QUESTION = "What is the travel allowance per day?"


@pytest.fixture
def two_policies(tmp_path):
    docs = tmp_path / "docs"
    (docs / "2023").mkdir(parents=True)
    (docs / "2024").mkdir()
    (docs / "2023" / "travel-policy.md").write_text(
        "# Travel policy 2023\n\nThe travel allowance is 40 euros per day for every trip.\n", encoding="utf-8"
    )
    (docs / "2024" / "travel-policy.md").write_text(
        "# Travel policy 2024\n\nThe travel allowance is 90 euros per day for every trip.\n", encoding="utf-8"
    )
    (docs / "canteen.txt").write_text("The canteen serves lunch from noon; the daily menu costs 6 euros.")
    settings = make_settings(tmp_path)
    settings.retrieval.min_similarity = 0.0
    ingestor, _ = fake_ingestor(settings)
    ingestor.run([docs])
    return settings, ingestor.store, docs


@pytest.mark.parametrize("searches", [(True, True), (True, False), (False, True)], ids=["hybrid", "vector", "keyword"])
def test_a_scoped_question_only_sees_passages_of_its_documents(two_policies, searches):
    settings, store, _ = two_policies
    settings.retrieval.vector, settings.retrieval.keyword = searches
    retriever = Retriever(store, FakeEmbedder(), settings)
    everything = retriever.search(QUESTION, 10)
    assert {p.source for p in everything} >= {"2023/travel-policy.md", "2024/travel-policy.md"}
    for year, amount in (("2023", "40 euros"), ("2024", "90 euros")):
        scope = resolve_scope(store.documents(), [f"{year}/travel-policy.md"], settings.paths.store_dir)
        found = retriever.search(QUESTION, 10, scope)
        assert found and {p.source for p in found} == {f"{year}/travel-policy.md"}
        assert amount in found[0].text


def test_names_folders_and_paths_select_documents_and_a_typo_is_an_error(two_policies):
    settings, store, docs = two_policies
    documents = store.documents()

    def names(*given):
        return resolve_scope(documents, list(given), settings.paths.store_dir).describe()

    assert names("2024") == names("2024/") == ["2024/travel-policy.md"]
    assert names("canteen.txt", "2023") == ["2023/travel-policy.md", "canteen.txt"]
    assert names(str(docs / "2023")) == ["2023/travel-policy.md"]  # a path on disk
    assert names(str(docs / "canteen.txt")) == ["canteen.txt"]
    assert len(names("docs")) == 3  # the ingested folder itself
    assert resolve_scope(documents, [], settings.paths.store_dir) is None  # no names: everything
    with pytest.raises(ScopeError, match="no document or folder in the store matches '2025'"):
        resolve_scope(documents, ["2024", "2025"], settings.paths.store_dir)


def test_a_scope_over_two_folders_is_one_chroma_filter(two_policies):
    settings, store, _ = two_policies
    scope = Scope(frozenset({("docs", "canteen.txt"), ("other", "a.txt")}))
    assert chroma_where(scope) == {
        "$or": [
            {"$and": [{"root": "docs"}, {"source": {"$in": ["canteen.txt"]}}]},
            {"$and": [{"root": "other"}, {"source": {"$in": ["a.txt"]}}]},
        ]
    }
    assert {m["source"] for _, m in store.iter_metadatas(chroma_where(scope))} == {"canteen.txt"}
    assert {store.records([cid])[cid][1]["source"] for cid in store.ids_in(scope)} == {"canteen.txt"}
