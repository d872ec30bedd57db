"""Which chunk size finds the evidence best? Vector-only retrieval recall on PIAF (FR) and COVID-QA (EN).

Each SQuAD article becomes one text file; the corpus is ingested through our own pipeline (real
tokenizer, real packaged embedder, real Chroma) once per chunk size; a seeded sample of questions is
embedded and searched; a hit is a retrieved chunk that contains the gold answer text.

    .venv/bin/python benchmarks/chunk_sweep.py --sizes 128 200 254 --questions 300
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

EVAL = Path(__file__).resolve().parent.parent.parent / "shared" / "eval"
SETS = {"piaf": EVAL / "piaf" / "piaf-v1.0.json", "covid_qa": EVAL / "covid_qa" / "200423_covidQA.json"}


def write_corpus(squad: Path, out: Path) -> list[tuple[str, list[str]]]:
    """One file per article; returns (question, answers) pairs."""
    out.mkdir(parents=True, exist_ok=True)
    questions = []
    for i, article in enumerate(json.loads(squad.read_text(encoding="utf-8"))["data"]):
        text = "\n\n".join(p["context"] for p in article["paragraphs"])
        (out / f"article{i:04}.txt").write_text(text, encoding="utf-8")
        for p in article["paragraphs"]:
            for qa in p["qas"]:
                answers = [a["text"] for a in qa["answers"] if a["text"].strip()]
                if answers and not qa.get("is_impossible"):
                    questions.append((qa["question"], answers))
    return questions


def evaluate(settings, corpus: Path, questions, ks=(1, 5, 10), budget: int = 1024) -> dict:
    """Recall@k, MRR, and recall within a context budget: the passages that fit ``budget`` tokens.

    Larger chunks win recall@k simply by holding more text, but the model pays for every token of
    context (prompt processing is the slow part on a CPU), so sizes are compared at equal budget.
    """
    from ingest.pipeline import build_ingestor
    from rag.models.embedding import load_embedder

    t0 = time.perf_counter()
    report = build_ingestor(settings).run([corpus])
    ingest_s = time.perf_counter() - t0
    from rag.models.embedding import embedding_model_info
    from rag.search.store import open_store

    store = open_store(settings, embedding_model_info(settings))
    embedder = load_embedder(settings)
    vectors = embedder.embed_documents([q for q, _ in questions])
    k_budget = max(1, budget // settings.chunking.chunk_tokens)
    ks = tuple(sorted(set(ks) | {k_budget}))
    hits = {k: 0 for k in ks}
    rr = 0.0
    for (_, answers), vec in zip(questions, vectors, strict=True):
        res = store.collection.query(query_embeddings=[vec], n_results=max(ks), include=["documents"])
        docs = res["documents"][0]
        rank = next((i for i, d in enumerate(docs) if any(a in d for a in answers)), None)
        if rank is not None:
            rr += 1 / (rank + 1)
            for k in ks:
                hits[k] += rank < k
    n = len(questions)
    return {
        "chunks": report.chunks_written,
        "ingest_s": round(ingest_s, 1),
        **{f"recall@{k}": round(hits[k] / n, 3) for k in ks},
        "mrr": round(rr / n, 3),
        "k_in_budget": k_budget,
        f"recall@{budget}tok": round(hits[k_budget] / n, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 200, 254])
    ap.add_argument("--overlap", type=float, default=0.15, help="overlap as a share of the chunk size")
    ap.add_argument("--questions", type=int, default=300, help="seeded sample per set")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args()

    from rag.settings import ChunkingSettings, PathSettings, Settings

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.sets:
            questions = write_corpus(SETS[name], Path(tmp) / name)
            sample = random.Random(args.seed).sample(questions, min(args.questions, len(questions)))
            for size in args.sizes:
                settings = Settings(
                    paths=PathSettings(store_dir=Path(tmp) / f"store-{name}-{size}"),
                    chunking=ChunkingSettings(chunk_tokens=size, overlap_tokens=int(size * args.overlap)),
                )
                row = {"set": name, "chunk_tokens": size, "questions": len(sample)}
                row |= evaluate(settings, Path(tmp) / name, sample)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| set | chunk tokens | chunks | recall@1 | recall@5 | recall@10 | MRR | recall in 1024 tokens (k) |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['set']} | {r['chunk_tokens']} | {r['chunks']} | {r['recall@1']} | {r['recall@5']} | "
            f"{r['recall@10']} | {r['mrr']} | {r['recall@1024tok']} ({r['k_in_budget']}) |"
        )


if __name__ == "__main__":
    main()
