"""Answer benchmark: retrieval latency at scale, and answer() against raw llama-cpp-python.

1. Retrieval: stores of N chunks (default 10k and 100k) whose texts are real passages (the sample
   documents and the PIAF / COVID-QA articles, cut by our chunker, repeated with a copy number to reach N)
   and whose vectors are random unit vectors (embedding 100k chunks would take over half an hour; index
   latency depends on size, not on meaning). Questions are embedded by the real model. Prints p50/p95 of
   Retriever.search (hybrid, vector only, keyword only) and of a raw Chroma query.
2. Generation: for a few questions on the sample store, answer() with the default model, then the same
   prompt tokens through raw Llama.create_completion; the KV cache is reset before each run. Prints time
   to first token and tokens/s, and ours/raw ratios (target >= 0.95).
3. Reranking (--rerank N): the packaged cross-encoder on batches of 20 real chunks of 128 tokens against
   one question, through rag.search.rerank and through a raw onnxruntime session on the same tokens; p50/p95 ms.
4. Pipeline (--pipeline): the sample questions asked in a row (the model's cache kept between them, as in
   the page and the API), today's pipeline (no reranker, k 8) against the default (reranker, retrieval.k):
   time to first token p50, prompt tokens, retrieval time; and the same with the cache reset before each
   question (what keeping the shared system prompt evaluated saves).
5. Grammar (--grammar N): the quoted answer style's grammar against no grammar, raw llama-cpp-python decoding
   the same prompts greedily (tokens/s), and the time to build and compile a question's grammar.

    .venv/bin/python benchmarks/answer_bench.py [--sizes 10000 100000] [--questions 3] [--rerank 30] [--pipeline]
        [--grammar 4]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from evaluation.metrics import percentile  # noqa: E402  (one percentile for every figure)

EVAL = ROOT.parent / "shared" / "eval"
QUESTIONS = [
    "How long did the storage outage last?",
    "What is the hotel cap per night in Paris?",
    "Combien de jours par semaine peut-on télétravailler ?",
    "How many species were recorded in the bird survey?",
]


def passage_texts() -> list[str]:
    """Real chunk texts: the eval articles (when present) and the samples, cut by our chunker."""
    from ingest.chunking import split_pages
    from ingest.readers import Page
    from rag.models.embedding import embedding_model_info, load_token_counter
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

    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.retrieval import Retriever
    from rag.search.store import open_store
    from rag.settings import PathSettings, Settings

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
                row[f"{mode}_p50_ms"] = round(percentile(times, 50), 1)
                row[f"{mode}_p95_ms"] = round(percentile(times, 95), 1)
            vectors = [embedder.embed_query(q) for q in queries]
            raw = []
            for v in vectors:
                t = time.perf_counter()
                store.collection.query(query_embeddings=[v], n_results=settings.retrieval.candidates)
                raw.append((time.perf_counter() - t) * 1000)
            row["raw_chroma_query_p50_ms"] = round(percentile(raw, 50), 1)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def generation(n_questions: int) -> dict:
    from rag.answering.answer import build_answerer
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
        grammar, decoding = same_constraints(answerer, a)
        t0 = time.perf_counter()
        first, n = None, 0
        for chunk in llama.create_completion(
            prompt=prompt.tokens,
            max_tokens=len(pieces) + 1,
            stop=prompt.stop,
            stream=True,
            grammar=grammar,
            **answerer.llm.sampling_kwargs(decoding),
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


def same_constraints(answerer, answer) -> tuple:
    """The grammar (compiled) and decoding the answerer used for ``answer``, for the raw library to do the same."""
    from rag.answering.quotes import answer_grammar
    from rag.llm import compile_grammar

    if answerer.settings.llm.answer_style != "quoted":
        return None, answerer.settings.llm
    grammar = compile_grammar(answer_grammar([s.passage.text for s in answer.sources]))
    return grammar, answerer.settings.llm.model_copy(update={"temperature": 0.0, "repeat_penalty": 1.0})


def grammar_cost(n_questions: int, tokens: int = 48) -> dict:
    """What the quoted style's grammar costs: raw llama-cpp-python decoding the same prompt greedily, with and
    without the grammar (tokens/s after the first token), and the time to build and compile the grammar."""
    from rag.answering.answer import build_answerer
    from rag.answering.quotes import answer_grammar
    from rag.llm import compile_grammar
    from rag.settings import load_settings

    answerer = build_answerer(load_settings())
    llama = answerer.llm.llama
    rates: dict[str, list[float]] = {"free": [], "grammar": []}
    compile_ms, rules = [], []
    for q in QUESTIONS[:n_questions]:
        a = answerer.answer(q)
        prompt = answerer.llm.last_prompt
        t0 = time.perf_counter()
        text = answer_grammar([s.passage.text for s in a.sources])
        grammar = compile_grammar(text)
        compile_ms.append((time.perf_counter() - t0) * 1000)
        rules.append(text.count("\n"))
        for label, g in (("free", None), ("grammar", grammar)):
            llama.reset()
            llama.eval(prompt.tokens)  # the prompt is not what is compared
            first, n = None, 0
            for chunk in llama.create_completion(
                prompt=prompt.tokens, max_tokens=tokens, stream=True, temperature=0.0, repeat_penalty=1.0, grammar=g
            ):
                if chunk["choices"][0]["text"]:
                    n += 1
                    first = first or time.perf_counter()
            end = time.perf_counter()
            if n > 1:
                rates[label].append((n - 1) / (end - first))
    result = {
        "questions": len(rates["grammar"]),
        "grammar_rules_mean": round(statistics.mean(rules)),
        "grammar_build_and_compile_ms_p50": round(statistics.median(compile_ms), 1),
        "tokens_per_s_free": round(statistics.mean(rates["free"]), 2),
        "tokens_per_s_grammar": round(statistics.mean(rates["grammar"]), 2),
    }
    result["ratio_grammar_over_free"] = round(result["tokens_per_s_grammar"] / result["tokens_per_s_free"], 3)
    print(json.dumps(result), flush=True)
    return result


def rerank_latency(rounds: int, batch: int = 20) -> dict:
    """rag.search.rerank's packaged cross-encoder vs a raw onnxruntime session on the same 20-passage batches."""
    import numpy as np
    import onnxruntime as ort
    from tokenizers import Tokenizer

    from rag.search.rerank import MS_MARCO_MINILM, load_reranker
    from rag.settings import Settings

    settings = Settings()
    reranker = load_reranker(settings)
    texts = passage_texts()
    rng = random.Random(3)
    batches = [(rng.choice(QUESTIONS), rng.sample(texts, batch)) for _ in range(rounds)]
    folder = MS_MARCO_MINILM.path()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = settings.retrieval.reranker_threads, 1
    session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tokenizer.enable_truncation(max_length=512)
    tokenizer.enable_padding()
    ours, raw, lengths = [], [], []
    reranker.score(*batches[0])  # warm up both
    for question, passages in batches:
        t = time.perf_counter()
        reranker.score(question, passages)
        ours.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        enc = tokenizer.encode_batch([(question, p) for p in passages])
        feed = {
            "input_ids": np.array([e.ids for e in enc], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in enc], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in enc], dtype=np.int64),
        }
        session.run(None, feed)
        raw.append((time.perf_counter() - t) * 1000)
        lengths.append(len(enc[0].ids))
    result = {
        "batches": rounds,
        "pairs_per_batch": batch,
        "padded_tokens_per_pair": round(statistics.mean(lengths)),
        "rerank_p50_ms": round(percentile(ours, 50), 1),
        "rerank_p95_ms": round(percentile(ours, 95), 1),
        "raw_onnxruntime_p50_ms": round(percentile(raw, 50), 1),
        "ratio_raw_over_ours_p50": round(percentile(raw, 50) / percentile(ours, 50), 3),
    }
    print(json.dumps(result), flush=True)
    return result


def pipeline(reset_each: bool) -> list[dict]:
    """TTFT p50 and prompt tokens of today's pipeline (no reranker, k 8) and of the default settings."""
    from rag.answering.answer import build_answerer
    from rag.llm import load_llm
    from rag.settings import load_settings

    base = load_settings()
    llm = load_llm(base)
    rows = []
    for label, reranker, k in (("today (hybrid, k 8)", "none", 8), ("default", base.retrieval.reranker, None)):
        settings = load_settings()
        settings.retrieval.reranker = reranker
        settings.retrieval.k = k or base.retrieval.k
        answerer = build_answerer(settings, llm)
        llm.llama.reset()
        ttft, prompt, retrieval = [], [], []
        for q in QUESTIONS:
            if reset_each:
                llm.llama.reset()
            a = answerer.answer(q)
            if a.timings.first_token_ms is not None:
                ttft.append(a.timings.first_token_ms)
                prompt.append(a.timings.prompt_tokens)
            retrieval.append(a.timings.retrieval_ms)
        row = {
            "pipeline": label,
            "cache": "reset before each question" if reset_each else "kept between questions",
            "k": settings.retrieval.k,
            "reranker": reranker,
            "answered": len(ttft),
            "ttft_p50_ms": round(statistics.median(ttft)) if ttft else None,
            "prompt_tokens_mean": round(statistics.mean(prompt)) if prompt else None,
            "retrieval_p50_ms": round(statistics.median(retrieval), 1),
        }
        rows.append(row)
        print(json.dumps(row, ensure_ascii=False), flush=True)
    if rows[0]["ttft_p50_ms"] and rows[1]["ttft_p50_ms"]:
        print(json.dumps({"ratio_ttft_default_over_today": round(rows[1]["ttft_p50_ms"] / rows[0]["ttft_p50_ms"], 3)}))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000])
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--rerank", type=int, default=0, help="batches of 20 passages to rerank (0: skip)")
    ap.add_argument("--pipeline", action="store_true", help="TTFT of today's pipeline vs the default")
    ap.add_argument("--grammar", type=int, default=0, help="questions for the grammar's cost (0: skip)")
    args = ap.parse_args()
    # The raw library runs in this process: so does our model here, to compare like with like (the worker
    # process against in-process: benchmarks/worker_bench.py).
    os.environ["SOURCIER_LLM__WORKER_PROCESS"] = "false"
    if args.sizes:
        retrieval_latency(args.sizes)
    if args.questions:
        generation(args.questions)
    if args.rerank:
        rerank_latency(args.rerank)
    if args.grammar:
        grammar_cost(args.grammar)
    if args.pipeline:
        pipeline(reset_each=False)
        pipeline(reset_each=True)


if __name__ == "__main__":
    main()
