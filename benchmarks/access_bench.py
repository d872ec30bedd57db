"""What holding a search to a person's collections costs, and whether it finds what their own store would.

Two measures (issue 32):

- ``--sizes N...``: search time with the filter against without it, on a store of N chunks (real passage texts,
  random unit vectors: search cost depends on size, not meaning) in 500 documents spread over four
  collections. For each size: the hybrid search (vectors and keywords fused; no reranker, whose cost does not
  depend on the filter) without a scope, for a person reading one collection (25% of the chunks) and two (50%);
  and raw Chroma's vector query without and with the same ``where``, in the same run (ratios: these machines
  are noisy). The query vectors are random too: embedding the question costs the same either way.
- ``--recall SET``: the eval set's store (``eval-runs/SET``, built by ``python -m evaluation SET``) with its
  articles split between two collections (alternately by name), against two stores holding only one half each
  (copies with the other half's chunks deleted: nothing embedded again). Each person's questions (those whose
  evidence is in their half) are asked through the full store held to their collection and through their own
  store: recall@5, MRR and the share of questions whose top 5 are the same chunks.

    .venv/bin/python benchmarks/access_bench.py --sizes 20000 100000 [--queries 200]
    .venv/bin/python benchmarks/access_bench.py --recall piaf [--questions 300] [--rerank 100]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.answer_bench import passage_texts  # noqa: E402
from benchmarks.scale_bench import BATCH, chunk_texts, real_questions  # noqa: E402
from evaluation.metrics import percentile  # noqa: E402

DOCUMENTS = 500
COLLECTIONS = 4


class RandomQueries:
    """A unit vector per query, the same for the same text: the embedder's cost left out of both arms."""

    def __init__(self, dimension: int) -> None:
        self.dimension = dimension

    def embed_query(self, text: str) -> list[float]:
        import numpy as np

        rng = np.random.default_rng(abs(hash(text)) % 2**32)
        v = rng.standard_normal(self.dimension).astype("float32")
        return (v / np.linalg.norm(v)).tolist()


def build(settings, size: int) -> float:  # noqa: ANN001
    """A store of ``size`` chunks in ``DOCUMENTS`` documents, document i in collection ``col-{i % 4}``."""
    import numpy as np

    from rag.models.embedding import embedding_model_info
    from rag.search.store import open_store

    info = embedding_model_info(settings)
    store = open_store(settings, info)
    base = passage_texts()
    rng = np.random.default_rng(7)
    t0 = time.perf_counter()
    for start in range(0, size, BATCH):
        n = min(BATCH, size - start)
        vectors = rng.standard_normal((n, info.dimension)).astype("float32")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        metas = [
            {"root": "bench", "source": f"doc{i % DOCUMENTS}.txt", "page": 0, "chunk_index": i // DOCUMENTS,
             "collections": [f"col-{(i % DOCUMENTS) % COLLECTIONS}"]}
            for i in range(start, start + n)
        ]  # fmt: skip
        store.upsert([f"c{i}" for i in range(start, start + n)], vectors.tolist(), chunk_texts(base, start, n), metas)
    return time.perf_counter() - t0


def timed(fn, repeats: list[float]):  # noqa: ANN001, ANN201
    t = time.perf_counter()
    out = fn()
    repeats.append((time.perf_counter() - t) * 1000)
    return out


def filter_cost(size: int, n_queries: int) -> dict:
    from rag.models.embedding import embedding_model_info
    from rag.search.retrieval import Retriever
    from rag.search.scope import Scope
    from rag.search.store import chroma_where, open_store
    from rag.settings import PathSettings, Settings

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(paths=PathSettings(store_dir=Path(tmp) / "store"))
        build_s = build(settings, size)
        info = embedding_model_info(settings)
        store = open_store(settings, info, create=False)
        retriever = Retriever(store, RandomQueries(info.dimension), settings)  # type: ignore[arg-type]
        queries = real_questions(n_queries)[:n_queries]
        scopes = {
            "all": None,
            "one collection (25%)": Scope(collections=frozenset({"col-0"})),
            "two collections (50%)": Scope(collections=frozenset({"col-0", "col-1"})),
        }
        k = settings.retrieval.candidates_for_rerank
        for q in queries[:5]:  # warm: Chroma's index loaded, SQLite pages cached
            for scope in scopes.values():
                retriever.hybrid(q, k, scope)
        times: dict[str, list[float]] = {name: [] for name in scopes}
        raw: dict[str, list[float]] = {name: [] for name in scopes}
        leaks = 0
        for q in queries:
            vector = retriever.embedder.embed_query(q)
            for name, scope in scopes.items():  # interleaved: the machine's noise falls on every arm alike
                found = timed(lambda q=q, scope=scope: retriever.hybrid(q, k, scope), times[name])
                where = chroma_where(scope)
                timed(
                    lambda vector=vector, where=where: store.collection.query(
                        query_embeddings=[vector], n_results=settings.retrieval.candidates, include=["distances"],
                        **({"where": where} if where else {}),
                    ),
                    raw[name],
                )  # fmt: skip
                if scope is not None:
                    ids = [p.chunk_id for p in found]
                    metas = store.records(ids)
                    leaks += sum(1 for cid in ids if not set(metas[cid][1]["collections"]) & scope.collections)
        row: dict = {"chunks": size, "build_s": round(build_s, 1), "queries": len(queries), "leaks": leaks}
        for name in scopes:
            row[f"hybrid p50 ms, {name}"] = round(percentile(times[name], 50), 1)
            row[f"hybrid p95 ms, {name}"] = round(percentile(times[name], 95), 1)
            row[f"raw chroma p50 ms, {name}"] = round(percentile(raw[name], 50), 1)
        for name in list(scopes)[1:]:
            row[f"ratio, {name}"] = round(percentile(times[name], 50) / percentile(times["all"], 50), 2)
            row[f"raw chroma ratio, {name}"] = round(percentile(raw[name], 50) / percentile(raw["all"], 50), 2)
        return row


def recall_split(name: str, n_questions: int, reranked: int) -> dict:
    from evaluation import metrics as m
    from evaluation.runner import GoldChunks
    from evaluation.sets import read_jsonl
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.rerank import load_reranker
    from rag.search.retrieval import Retriever
    from rag.search.scope import Scope
    from rag.search.store import drop_cached_stores, open_store
    from rag.settings import PathSettings, Settings

    runs = ROOT / "eval-runs" / name
    source = next(p for p in sorted(runs.glob("store-default-*")) if p.is_dir())
    questions = [q for q in read_jsonl(runs / "questions.jsonl") if q.answerable]
    random.Random(13).shuffle(questions)
    questions = questions[:n_questions]
    rows: dict = {"set": name, "store": source.name}
    with tempfile.TemporaryDirectory() as tmp:
        stores = {}
        for copy in ("whole", "a", "b"):
            shutil.copytree(source, Path(tmp) / copy)
            settings = Settings(paths=PathSettings(store_dir=Path(tmp) / copy))
            stores[copy] = (settings, open_store(settings, None, create=False))
        whole = stores["whole"][1]
        documents = whole.documents()
        half = {d.source: ("a" if i % 2 == 0 else "b") for i, d in enumerate(documents)}
        for d in documents:
            whole.set_collections(d.root, d.source, [f"col-{half[d.source]}"])
        for copy in ("a", "b"):
            store = stores[copy][1]
            gone = [cid for cid, meta in store.iter_metadatas() if half.get(str(meta.get("source"))) != copy]
            store.delete(gone)
        gold = GoldChunks(whole)
        settings = stores["whole"][0]
        info = embedding_model_info(settings)
        embedder = load_embedder(settings, info)
        reranker = load_reranker(settings)
        for mode in ("hybrid", "reranked"):
            asked = questions if mode == "hybrid" else questions[:reranked]
            for person in ("a", "b"):
                theirs = [q for q in asked if all(half.get(ev.document) == person for ev in q.evidence)]
                scope = Scope(collections=frozenset({f"col-{person}"}))
                with_filter = Retriever(whole, embedder, settings, reranker if mode == "reranked" else None)
                own_settings, own_store = stores[person]
                alone = Retriever(own_store, embedder, own_settings, reranker if mode == "reranked" else None)
                found_in = {"filtered": [], "own store": []}
                same = 0
                for q in theirs:
                    filtered = [p.chunk_id for p in with_filter.search(q.question, 5, scope)]
                    own = [p.chunk_id for p in alone.search(q.question, 5)]
                    same += filtered == own
                    found_in["filtered"].append(filtered)
                    found_in["own store"].append(own)
                for arm, ranked in found_in.items():
                    golds = [gold.of(q) for q in theirs]
                    recall = sum(m.recall_at(r, g, 5) for r, g in zip(ranked, golds, strict=True)) / max(1, len(theirs))
                    mrr = sum(m.reciprocal_rank(r, g) for r, g in zip(ranked, golds, strict=True)) / max(1, len(theirs))
                    rows[f"{mode}, person {person}, {arm}: recall@5"] = round(recall, 3)
                    rows[f"{mode}, person {person}, {arm}: mrr"] = round(mrr, 3)
                rows[f"{mode}, person {person}: questions"] = len(theirs)
                rows[f"{mode}, person {person}: same top 5"] = round(same / max(1, len(theirs)), 3)
        drop_cached_stores()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="*", type=int, default=[20_000, 100_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--recall", help="an eval set with a store in eval-runs/ (piaf, covid_qa)")
    ap.add_argument("--questions", type=int, default=300)
    ap.add_argument("--rerank", type=int, default=100, help="questions asked with the reranker too")
    args = ap.parse_args()
    for size in args.sizes:
        print(json.dumps(filter_cost(size, args.queries)), flush=True)
    if args.recall:
        print(json.dumps(recall_split(args.recall, args.questions, args.rerank), ensure_ascii=False), flush=True)


if __name__ == "__main__":
    main()
