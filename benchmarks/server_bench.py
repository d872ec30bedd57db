"""Servers benchmark: what sourcier adds on top of a Chroma server and an OpenAI-compatible LLM server.

Starts, on 127.0.0.1, `chroma run` and `python -m llama_cpp.server` with the default GGUF, then:

1. Store: the chunks of an embedded store (default: the sample documents' store, or --store, e.g. an
   evaluation store) copied into the server; p50/p95 of our Store.nearest and of a raw
   collection.query, on the embedded store and on the server, for the same query vectors; and the
   hybrid Retriever.search (vectors + BM25 + the change-marker check) on both.
2. LLM: the same packed answer prompt streamed through our RemoteLLM and through raw httpx (the same
   JSON body, server-sent events parsed by hand): time to first piece and pieces/s; ours/raw ratios.
3. API: one question through `python -m rag serve` (over both servers) against Answerer.answer in
   this process: end-to-end seconds, ratio.

    .venv/bin/python benchmarks/server_bench.py [--store vectorstore] [--queries 200] [--runs 3]
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
from devkit.processes import free_port, start, stop, wait_for  # noqa: E402  (shared with the server tests)
from evaluation.metrics import percentile  # noqa: E402  (one percentile for every figure)

BIN = Path(sys.executable).parent
QUESTION = "What is the hotel cap per night in Paris?"


def timed(fn, n: int) -> list[float]:
    out = []
    for i in range(n):
        t0 = time.perf_counter()
        fn(i)
        out.append((time.perf_counter() - t0) * 1000)
    return out


def copy_to_server(local, server_store) -> int:
    got = local.collection.get(include=["embeddings", "documents", "metadatas"])
    server_store.upsert(got["ids"], got["embeddings"], got["documents"], got["metadatas"])
    return len(got["ids"])


def bench_store(store_dir: Path, chroma_port: int, queries: int) -> None:
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.retrieval import Retriever
    from rag.search.store import open_store
    from rag.settings import Settings

    local_settings = Settings()
    local_settings.paths.store_dir = store_dir
    info = embedding_model_info(local_settings)
    local = open_store(local_settings, info, create=False)
    server_settings = Settings()
    server_settings.store.mode, server_settings.store.port = "http", chroma_port
    server_settings.store.collection = "bench"
    server = open_store(server_settings, info)
    n = copy_to_server(local, server)
    rng = random.Random(5)
    texts = [t for _, t in local.iter_documents()]
    embedder = load_embedder(local_settings, info)
    probes = [" ".join(rng.choice(texts).split()[:12]) for _ in range(queries)]
    vectors = embedder.embed_documents(probes)
    for probe in probes[:10]:  # warm the embedder up before anything is timed
        embedder.embed_query(probe)
    print(f"\n1. store: {n} chunks, {queries} queries (k=30)")
    rows = []
    for name, store in (("embedded", local), ("server", server)):
        ours = timed(lambda i, s=store: s.nearest(vectors[i], 30), queries)
        raw = timed(
            lambda i, s=store: s.collection.query(query_embeddings=[vectors[i]], n_results=30, include=["distances"]),
            queries,
        )
        retriever = Retriever(store, embedder, store.settings)
        retriever.search(probes[0])  # builds the BM25 index once
        hybrid = timed(lambda i, r=retriever: r.search(probes[i]), queries)
        rows.append((name, ours, raw, hybrid))
        p50 = {label: percentile(times, 50) for label, times in (("ours", ours), ("raw", raw), ("hybrid", hybrid))}
        p95 = {label: percentile(times, 95) for label, times in (("ours", ours), ("raw", raw), ("hybrid", hybrid))}
        print(
            f"   {name:9} Store.nearest p50 {p50['ours']:6.2f} ms p95 {p95['ours']:6.2f} | raw query p50 "
            f"{p50['raw']:6.2f} ms p95 {p95['raw']:6.2f} | ours/raw p50 {p50['ours'] / p50['raw']:.3f} | "
            f"hybrid search p50 {p50['hybrid']:6.2f} ms p95 {p95['hybrid']:6.2f}"
        )
    print(f"   server/embedded hybrid p50: {percentile(rows[1][3], 50) / percentile(rows[0][3], 50):.2f}")


def raw_stream(url: str, body: dict) -> tuple[float, int, float]:
    import httpx

    t0 = time.perf_counter()
    first, pieces = None, 0
    with httpx.Client(timeout=300, trust_env=False) as client, client.stream("POST", url, json=body) as reply:
        for line in reply.iter_lines():
            if not line.startswith("data:") or line.strip() == "data: [DONE]":
                continue
            if json.loads(line[5:])["choices"][0]["delta"].get("content"):
                first = first or time.perf_counter() - t0
                pieces += 1
    return first or 0.0, pieces, time.perf_counter() - t0


def ours_stream(llm, prompt, max_tokens: int) -> tuple[float, int, float]:
    t0 = time.perf_counter()
    first, pieces = None, 0
    for _ in llm.stream(prompt, max_tokens=max_tokens):
        first = first or time.perf_counter() - t0
        pieces += 1
    return first or 0.0, pieces, time.perf_counter() - t0


def bench_llm(llm_url: str, runs: int, max_tokens: int) -> None:
    from rag.answering.answer import USER_TEMPLATE, system_prompt
    from rag.answering.packing import pack_prompt
    from rag.llm import connect_llm_server
    from rag.search.retrieval import build_retriever
    from rag.settings import Settings

    settings = Settings()
    settings.llm.backend, settings.llm.server_url = "server", llm_url
    settings.llm.temperature = 0.0
    llm = connect_llm_server(settings)
    passages = build_retriever(Settings()).search(QUESTION, settings.retrieval.k)
    packed = pack_prompt(llm.prompter, system=system_prompt(None, "en"), history=[], passages=passages,
                         question=QUESTION, user_template=USER_TEMPLATE, n_ctx=settings.llm.n_ctx,
                         answer_tokens=max_tokens)  # fmt: skip
    body = {"model": llm.model, "messages": packed.prompt.messages, "max_tokens": max_tokens, "stream": True,
            **llm.sampling_kwargs()}  # fmt: skip
    print(f"\n2. LLM server: {runs} runs each, alternating, {max_tokens} tokens at most, temperature 0")
    ours, raw = [], []
    for i in range(runs):
        # A different first word each run defeats the server's prompt cache for both sides alike.
        salt = [{**m, "content": f"({i}) " + m["content"]} if m["role"] == "system" else m for m in body["messages"]]
        raw.append(raw_stream(llm.url + "/chat/completions", {**body, "messages": salt}))
        prompt = llm.prompter.render(
            [{**m, "content": f"({i}b) " + m["content"]} if m["role"] == "system" else m for m in body["messages"]]
        )
        ours.append(ours_stream(llm, prompt, max_tokens))
    for name, rows in (("ours (RemoteLLM)", ours), ("raw httpx", raw)):
        ttft = statistics.median(r[0] for r in rows)
        rate = statistics.median((r[1] - 1) / (r[2] - r[0]) for r in rows if r[1] > 1 and r[2] > r[0])
        print(f"   {name:17} first piece {ttft:6.2f} s, {rate:5.1f} pieces/s")
    ratio_ttft = statistics.median(r[0] for r in raw) / statistics.median(r[0] for r in ours)
    ratio_rate = statistics.median((r[1] - 1) / (r[2] - r[0]) for r in ours) / statistics.median(
        (r[1] - 1) / (r[2] - r[0]) for r in raw
    )
    print(f"   raw/ours first piece (>= 0.95 good): {ratio_ttft:.3f}; ours/raw pieces/s: {ratio_rate:.3f}")


def bench_api(chroma_port: int, llm_url: str, runs: int) -> None:
    import httpx

    from rag.answering.answer import build_answerer
    from rag.settings import Settings

    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env |= {"SOURCIER_LLM__BACKEND": "server", "SOURCIER_LLM__SERVER_URL": llm_url}
    port = free_port()
    proc = start([sys.executable, "-m", "rag", "serve", "--port", str(port)], env=env, keep_stderr=False)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc, seconds=180)
        settings = Settings()
        settings.llm.backend, settings.llm.server_url = "server", llm_url
        answerer = build_answerer(settings)
        print(f"\n3. API: '{QUESTION}' {runs} times each (embedded store, LLM server), after one warm-up each")

        def through_api() -> None:
            httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", timeout=600, trust_env=False,
                       json={"messages": [{"role": "user", "content": QUESTION}]}).raise_for_status()  # fmt: skip

        def flush() -> None:  # another prompt, so the next question is not served from the server's cache
            httpx.post(f"{llm_url}/chat/completions", timeout=600, trust_env=False,
                       json={"messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 1})  # fmt: skip

        through_api()
        answerer.answer(QUESTION)
        api, direct = [], []
        for _ in range(runs):
            flush()
            t0 = time.perf_counter()
            through_api()
            api.append(time.perf_counter() - t0)
            flush()
            t0 = time.perf_counter()
            answerer.answer(QUESTION)
            direct.append(time.perf_counter() - t0)
        a, d = statistics.median(api), statistics.median(direct)
        print(f"   through the API {a:.2f} s, Answerer.answer in process {d:.2f} s, direct/API {d / a:.3f}")
    finally:
        stop(proc)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--store", type=Path, default=ROOT / "vectorstore")
    p.add_argument("--queries", type=int, default=200)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--max-tokens", type=int, default=64)
    args = p.parse_args()
    import rag  # noqa: F401  (offline switches)
    from rag.models.gguf import resolve_model_path
    from rag.settings import Settings

    model = resolve_model_path(Settings())
    chroma_port, llm_port = free_port(), free_port()
    with tempfile.TemporaryDirectory() as tmp:
        chroma = start([str(BIN / "chroma"), "run", "--path", f"{tmp}/db", "--host", "127.0.0.1",
                        "--port", str(chroma_port)], keep_stderr=False)  # fmt: skip
        llm = start([sys.executable, "-m", "llama_cpp.server", "--model", str(model), "--host", "127.0.0.1",
                     "--port", str(llm_port), "--n_ctx", "4096", "--n_threads", "2",
                     "--n_threads_batch", "2"], keep_stderr=False)  # fmt: skip
        try:
            wait_for(f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", chroma, seconds=180)
            wait_for(f"http://127.0.0.1:{llm_port}/v1/models", llm, seconds=180)
            llm_url = f"http://127.0.0.1:{llm_port}/v1"
            bench_store(args.store, chroma_port, args.queries)
            bench_llm(llm_url, args.runs, args.max_tokens)
            bench_api(chroma_port, llm_url, args.runs)
        finally:
            stop(chroma)
            stop(llm)


if __name__ == "__main__":
    main()
