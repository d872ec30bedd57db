"""Answer benchmark: retrieval latency at scale, and answer() against raw llama-cpp-python.

1. Retrieval: stores of N chunks (default 10k and 100k) whose texts are real passages (the sample
   documents and the PIAF / COVID-QA articles, cut by our chunker, repeated with a copy number to reach N)
   and whose vectors are random unit vectors (embedding 100k chunks would take over half an hour; index
   latency depends on size, not on meaning). Questions are embedded by the real model. Prints p50/p95 of
   Retriever.search (hybrid, vector only, keyword only) and of a raw Chroma query.
2. Generation: for a few questions on the sample store, answer() with the default model, then the same
   prompt tokens through raw Llama.create_completion; the KV cache is reset before each run. Prints time
   to first token and tokens/s, and ours/raw ratios (target >= 0.95).

    .venv/bin/python benchmarks/answer_bench.py [--sizes 10000 100000] [--questions 3]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
EVAL = ROOT.parent / "shared" / "eval"
QUESTIONS = [
    "How long did the storage outage last?",
    "What is the hotel cap per night in Paris?",
    "Combien de jours par semaine peut-on télétravailler ?",
    "How many species were recorded in the bird survey?",
]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def passage_texts() -> list[str]:
    """Real chunk texts: the eval articles (when present) and the samples, cut by our chunker."""
    from ingest.chunking import split_pages
    from ingest.readers import Page
    from rag.embedding import embedding_model_info, load_token_counter
    from rag.settings import Settings

    settings = Settings()
    counter = load_token_counter(embedding_model_info(settings))
    texts = []
    for squad in (EVAL / "piaf" / "piaf-v1.0.json", EVAL / "covid_qa" / "200423_covidQA.json"):
        if squad.is_file():
            for article in json.loads(squad.read_text(encoding="utf-8"))["data"]:
                page = Page(0, "\n\n".join(p["context"] for p in article["paragraphs"]))
                c = settings.chunking
                texts += [ch.text for ch in split_pages([page], counter, c.chunk_tokens, c.overlap_tokens)]
    return texts or ["placeholder passage about nothing in particular"]


def retrieval_latency(sizes: list[int], n_queries: int = 50) -> list[dict]:
    import numpy as np

    from rag.embedding import embedding_model_info, load_embedder
    from rag.retrieval import Retriever
    from rag.settings import PathSettings, Settings
    from rag.store import open_store

    base = passage_texts()
    rows = []
    embedder = load_embedder(Settings())
    queries = (QUESTIONS * (n_queries // len(QUESTIONS) + 1))[:n_queries]
    for size in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            settings = Settings(paths=PathSettings(store_dir=Path(tmp) / "store"))
            store = open_store(settings, embedding_model_info(settings))
            rng = np.random.default_rng(0)
            t0 = time.perf_counter()
            for start in range(0, size, 5000):
                n = min(5000, size - start)
                vecs = rng.standard_normal((n, 384)).astype("float32")
                vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
                ids = [f"c{i}" for i in range(start, start + n)]
                texts = [f"{base[i % len(base)]} (copy {i // len(base)})" for i in range(start, start + n)]
                metas = [
                    {"root": "bench", "source": f"doc{i % 500}.txt", "page": 0, "start": 0, "end": 1}
                    for i in range(start, start + n)
                ]
                store.upsert(ids, vecs.tolist(), texts, metas)
            build_s = time.perf_counter() - t0
            row = {"chunks": size, "store_build_s": round(build_s, 1)}
            for mode, (vector, keyword) in {
                "hybrid": (True, True),
                "vector": (True, False),
                "keyword": (False, True),
            }.items():
                settings.retrieval.vector, settings.retrieval.keyword = vector, keyword
                retriever = Retriever(store, embedder, settings)
                retriever.search("warm up")  # builds the keyword index once
                times = []
                for q in queries:
                    t = time.perf_counter()
                    retriever.search(q)
                    times.append((time.perf_counter() - t) * 1000)
                row[f"{mode}_p50_ms"] = round(percentile(times, 0.5), 1)
                row[f"{mode}_p95_ms"] = round(percentile(times, 0.95), 1)
            vectors = [embedder.embed_query(q) for q in queries]
            raw = []
            for v in vectors:
                t = time.perf_counter()
                store.collection.query(query_embeddings=[v], n_results=settings.retrieval.candidates)
                raw.append((time.perf_counter() - t) * 1000)
            row["raw_chroma_query_p50_ms"] = round(percentile(raw, 0.5), 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def generation(n_questions: int) -> dict:
    from rag.answer import build_answerer
    from rag.settings import load_settings

    answerer = build_answerer(load_settings())
    llama = answerer.llm.llama
    ours_ttft, ours_tps, raw_ttft, raw_tps = [], [], [], []
    for q in random.Random(1).sample(QUESTIONS, min(n_questions, len(QUESTIONS))):
        llama.reset()
        stream = answerer.stream(q)
        pieces = list(stream)
        a = stream.answer
        if a is None or not a.found or a.timings.first_token_ms is None:
            continue
        prompt = answerer.llm.last_prompt
        ours_ttft.append(a.timings.first_token_ms)
        ours_tps.append(a.timings.tokens_per_s)
        llama.reset()
        t0 = time.perf_counter()
        first, n = None, 0
        for chunk in llama.create_completion(
            prompt=prompt.tokens,
            max_tokens=len(pieces) + 1,
            stop=prompt.stop,
            stream=True,
            **answerer.llm.sampling_kwargs(),
        ):
            if chunk["choices"][0]["text"]:
                n += 1
                if first is None:
                    first = time.perf_counter()
        end = time.perf_counter()
        raw_ttft.append((first - t0) * 1000)
        raw_tps.append((n - 1) / (end - first) if n > 1 and end > first else 0.0)
    result = {
        "questions": len(ours_ttft),
        "ttft_ms_ours": round(statistics.mean(ours_ttft), 0),
        "ttft_ms_raw": round(statistics.mean(raw_ttft), 0),
        "tokens_per_s_ours": round(statistics.mean(ours_tps), 2),
        "tokens_per_s_raw": round(statistics.mean(raw_tps), 2),
    }
    result["ratio_ttft_raw_over_ours"] = round(result["ttft_ms_raw"] / result["ttft_ms_ours"], 3)
    result["ratio_tokens_per_s_ours_over_raw"] = round(result["tokens_per_s_ours"] / result["tokens_per_s_raw"], 3)
    print(json.dumps(result), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--questions", type=int, default=3)
    args = ap.parse_args()
    if args.sizes:
        retrieval_latency(args.sizes)
    if args.questions:
        generation(args.questions)


if __name__ == "__main__":
    main()
