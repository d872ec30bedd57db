"""Scale benchmark: the keyword index at 100k and 1M chunks, persistent (SQLite FTS5) against in-memory (bm25s).

Chunks are real passages (the PIAF and COVID-QA articles cut by our chunker, repeated with a copy number to
reach N); queries are real questions of those sets. For each size it prints:

- build: indexing every chunk, through ``SqliteKeywordIndex.add`` (what the ingest now pays, spread over its
  batches) and through raw bm25s (what every reader used to pay at start and after any write);
- first search: a reader that opens the index and answers one query (the persistent index opens a file; the
  in-memory one must be built from every chunk first: at 46k chunks this was 6.7-13.6 s);
- warm search p50 / p95 over the queries, ours and raw bm25s on the same terms (ratio);
- write seen: one chunk added by a writer, until a reader's search returns it (no rebuild);
- the index file's size.

With ``--tantivy`` (the ``tantivy`` package installed by hand; not a dependency): the same chunks and
questions through a Tantivy index (BM25 over the same terms), the engine compared with SQLite FTS5.

With ``--hybrid N...``: a store of N chunks (Chroma and the keyword index; random vectors), then a new reader
process: from its start to its first hybrid search result (and raw Chroma's start to its first query, in a
new process too), warm hybrid p50/p95, a chunk written by another
process seen by its next search (by its keywords and its vector: the reader reads the writes logged since,
nothing is reloaded), the document list (from the keyword index, and from every chunk's metadata in Chroma),
and its peak memory.

With ``--reopens N``: a reader (``LiveRetriever``) over a store of ``--reopen-chunks`` chunks (real texts,
random vectors) sees N writes by another process and reopens its store each time (as it does past
``rag.search.retrieval.FRESH_MAX`` writes); prints its memory and
open files every 10 reopens, with the old copies released (default) or kept (``--release off``, as before).

    .venv/bin/python benchmarks/scale_bench.py [--sizes 100000 1000000] [--queries 200]
    .venv/bin/python benchmarks/scale_bench.py --sizes --reopens 50 [--release off]
    .venv/bin/python benchmarks/scale_bench.py --sizes --hybrid 100000 1000000 [--keep /var/tmp/scale]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.answer_bench import passage_texts  # noqa: E402
from evaluation.metrics import percentile  # noqa: E402

BATCH = 5000


def real_questions(n: int) -> list[str]:
    from evaluation.sets import read_jsonl

    questions: list[str] = []
    for name in ("piaf", "covid_qa"):
        path = ROOT / "eval-runs" / name / "questions.jsonl"
        if path.is_file():
            questions += [q.question for q in read_jsonl(path)[: n // 2]]
    return questions or ["What is the hotel cap per night in Paris?", "Combien de jours de télétravail ?"]


def chunk_texts(base: list[str], start: int, n: int) -> list[str]:
    return [f"{base[i % len(base)]} (copy {i // len(base)})" for i in range(start, start + n)]


def timed_ms(fn, *args):  # noqa: ANN001, ANN202
    t = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - t) * 1000


def bench_size(size: int, base: list[str], queries: list[str]) -> dict:
    import bm25s

    from rag.search.keyword import SqliteKeywordIndex
    from rag.text import keyword_tokens

    row: dict = {"chunks": size}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "keywords.sqlite3"
        writer = SqliteKeywordIndex(path)
        t0 = time.perf_counter()
        for start in range(0, size, BATCH):
            n = min(BATCH, size - start)
            writer.add([f"c{i}" for i in range(start, start + n)], chunk_texts(base, start, n))
        row["sqlite_build_s"] = round(time.perf_counter() - t0, 1)
        row["sqlite_file_mb"] = round(sum(p.stat().st_size for p in Path(tmp).iterdir()) / 2**20)

        t0 = time.perf_counter()
        corpus = [keyword_tokens(t) or [""] for t in chunk_texts(base, 0, size)]
        raw = bm25s.BM25()
        raw.index(corpus, show_progress=False)
        del corpus
        row["bm25s_build_s"] = round(time.perf_counter() - t0, 1)

        t0 = time.perf_counter()
        reader = SqliteKeywordIndex(path)  # a new reader: opens the file, no shared cache
        reader.search(queries[0], 30)
        row["sqlite_first_search_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        row["bm25s_first_search_ms"] = round(row["bm25s_build_s"] * 1000)  # it must be built first

        ours, theirs = [], []
        vocab = set(raw.vocab_dict)
        for q in queries:
            ours.append(timed_ms(reader.search, q, 30)[1])
            terms = [t for t in keyword_tokens(q) if t in vocab]
            if terms:
                theirs.append(timed_ms(lambda t=terms: raw.retrieve([t], k=30, show_progress=False))[1])
        for name, times in (("sqlite", ours), ("bm25s", theirs)):
            row[f"{name}_search_p50_ms"] = round(percentile(times, 50), 1)
            row[f"{name}_search_p95_ms"] = round(percentile(times, 95), 1)
        row["search_p50_ratio"] = round(row["sqlite_search_p50_ms"] / row["bm25s_search_p50_ms"], 2)

        t0 = time.perf_counter()
        writer.add(["fresh"], ["Une fleur zygomorphe a un seul plan de symétrie."])
        seen = [cid for cid, _ in reader.search("zygomorphe symétrie", 5)]
        row["write_seen_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        assert seen[:1] == ["fresh"], seen
        reader.close()
        writer.close()
    return row


def build_store(settings, chunks: int, base: list[str], first: int = 0) -> float:  # noqa: ANN001
    """A store of ``chunks`` real texts with random unit vectors (embedding a million chunks would take days
    on 2 cores; search cost depends on size, not meaning), through Store.upsert (Chroma and the keyword
    index). Returns the seconds it took."""
    import numpy as np

    from rag.models.embedding import embedding_model_info
    from rag.search.store import open_store

    info = embedding_model_info(settings)
    store = open_store(settings, info)
    rng = np.random.default_rng(first)
    t0 = time.perf_counter()
    for start in range(first, first + chunks, BATCH):
        n = min(BATCH, first + chunks - start)
        vectors = rng.standard_normal((n, info.dimension)).astype("float32")
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        metas = [{"root": "bench", "source": f"doc{i % 500}.txt", "page": 0} for i in range(start, start + n)]
        store.upsert([f"c{i}" for i in range(start, start + n)], vectors.tolist(), chunk_texts(base, start, n), metas)
        written = start + n - first
        if written % 50_000 == 0:
            print(f"  {written:,} chunks written, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return time.perf_counter() - t0


def hybrid_reader(store_dir: Path, started: float, n_queries: int) -> dict:
    """In a fresh process: from process start to the first hybrid search result, warm p50/p95, a write by
    another process seen, peak memory."""
    import resource
    import subprocess

    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.retrieval import LiveRetriever
    from rag.settings import PathSettings, Settings

    settings = Settings(paths=PathSettings(store_dir=store_dir))
    info = embedding_model_info(settings)
    live = LiveRetriever(settings, load_embedder(settings, info), info)  # hybrid, no reranker
    live.search("Quelle est la population de Paris ?")  # the benchmark's questions are read after this
    row: dict = {"start_to_first_search_s": round(time.time() - started, 2)}
    queries = real_questions(n_queries)
    times = [timed_ms(live.search, q)[1] for q in queries]
    row["hybrid_p50_ms"] = round(percentile(times, 50), 1)
    row["hybrid_p95_ms"] = round(percentile(times, 95), 1)
    fresh = f"fresh-{time.time_ns()}"  # a new chunk each run (a kept store is measured again)
    writer = [sys.executable, __file__, "--write-one", str(store_dir), "--fresh-id", fresh]
    done = subprocess.run(writer, capture_output=True, text=True)  # another process adds one chunk
    if done.returncode != 0:
        raise SystemExit(done.stderr[-2000:])
    t0 = time.perf_counter()
    found = live.search("zygomorphe symétrie", k=5)  # no reload: the writes logged since are read
    row["write_seen_s"] = round(time.perf_counter() - t0, 3)
    seen = [p for p in found if p.chunk_id == fresh]
    assert seen and seen[0].similarity is not None, found  # by its keywords and by its vector
    times = [timed_ms(live.search, q)[1] for q in queries[:50]]
    row["hybrid_p50_ms_after_write"] = round(percentile(times, 50), 1)
    t0 = time.perf_counter()
    live.store.documents()  # the page's document list: from the keyword index (taught it once if older)
    row["documents_first_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    listed = live.store.documents()
    row["documents_s"] = round(time.perf_counter() - t0, 2)
    t0 = time.perf_counter()
    scanned = live.store.documents_from_chunks()  # the same list from every chunk's metadata in Chroma
    row["documents_from_chroma_s"] = round(time.perf_counter() - t0, 2)
    assert listed == scanned
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return row


def write_one(store_dir: Path, chunk_id: str) -> None:
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.store import open_store
    from rag.settings import PathSettings, Settings

    settings = Settings(paths=PathSettings(store_dir=store_dir))
    info = embedding_model_info(settings)
    text = "Une fleur zygomorphe : une symétrie."
    vector = load_embedder(settings, info).embed_documents([text])[0]  # found by its meaning too
    meta = {"root": "bench", "source": "fresh.txt", "page": 0}
    open_store(settings, info).upsert([chunk_id], [list(vector)], [text], [meta])


def hybrid_at_scale(size: int, queries: int, keep: Path | None = None) -> dict:
    """Build a store of ``size`` chunks, then measure a new reader process over it (``hybrid_reader``). With
    ``keep``, the store is built in that folder and left there; a folder that already holds ``size`` chunks
    is measured again without being rebuilt (a 1M-chunk store takes most of an hour to write here)."""
    import subprocess

    from rag.settings import PathSettings, Settings

    with tempfile.TemporaryDirectory() as tmp:
        store_dir = keep / f"store-{size}" if keep is not None else Path(tmp) / "store"
        built = store_dir / "built.json"
        if built.is_file() and json.loads(built.read_text())["chunks"] == size:
            build_s = json.loads(built.read_text())["store_build_s"]
        else:
            build_s = build_store(Settings(paths=PathSettings(store_dir=store_dir)), size, passage_texts())
            built.write_text(json.dumps({"chunks": size, "store_build_s": build_s}))
        row = {"chunks": size, "store_build_s": round(build_s, 1)}
        # The raw library first, in a new process: import chromadb, open the store, one vector query.
        name = Settings().store.collection
        raw = subprocess.run([sys.executable, "-c", RAW_START, str(store_dir), name], capture_output=True, text=True)
        if raw.returncode != 0:
            raise SystemExit(raw.stderr[-2000:])
        row["raw_chroma_start_to_first_query_s"] = round(float(raw.stdout.split()[-1]), 2)
        child = [sys.executable, __file__, "--reader", str(store_dir), str(time.time()), "--queries", str(queries)]
        done = subprocess.run(child, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(done.stderr[-2000:])
        row.update(json.loads(done.stdout.strip().splitlines()[-1]))
        row["start_ratio_to_raw"] = round(row["start_to_first_search_s"] / row["raw_chroma_start_to_first_query_s"], 2)
        return row


RAW_START = """
import time
started = time.time()
import sys
import chromadb
client = chromadb.PersistentClient(path=sys.argv[1], settings=chromadb.Settings(anonymized_telemetry=False))
collection = client.get_collection(sys.argv[2])
dimension = int(collection.metadata["dimension"])
collection.query(query_embeddings=[[1.0] + [0.0] * (dimension - 1)], n_results=50, include=["distances"])
print(time.time() - started)
"""


def tantivy_row(size: int, base: list[str], queries: list[str]) -> dict:
    import tantivy

    from rag.text import keyword_tokens

    row: dict = {"chunks": size, "engine": "tantivy"}
    with tempfile.TemporaryDirectory() as tmp:
        builder = tantivy.SchemaBuilder()
        builder.add_text_field("id", stored=True, tokenizer_name="raw")
        builder.add_text_field("body", stored=False, tokenizer_name="whitespace")
        schema = builder.build()
        index = tantivy.Index(schema, path=tmp)
        t0 = time.perf_counter()
        writer = index.writer(heap_size=200_000_000, num_threads=2)
        for start in range(0, size, BATCH):
            texts = chunk_texts(base, start, min(BATCH, size - start))
            for i, text in enumerate(texts, start):
                writer.add_document(tantivy.Document(id=f"c{i}", body=" ".join(keyword_tokens(text))))
            writer.commit()
        writer.wait_merging_threads()
        row["build_s"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        searcher = tantivy.Index.open(tmp).searcher()

        def search(q: str) -> list:
            terms = list(dict.fromkeys(keyword_tokens(q)))
            should = [(tantivy.Occur.Should, tantivy.Query.term_query(schema, "body", t)) for t in terms]
            return searcher.search(tantivy.Query.boolean_query(should), 30).hits if terms else []

        search(queries[0])
        row["first_search_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        times = [timed_ms(search, q)[1] for q in queries]
        row["search_p50_ms"] = round(percentile(times, 50), 1)
        row["search_p95_ms"] = round(percentile(times, 95), 1)
    return row


def reopen_release(chunks: int, reopens: int, release: bool) -> None:
    import gc
    import os
    import uuid

    import rag.search.retrieval
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.store import CHANGE_MARKER
    from rag.settings import PathSettings, Settings

    def rss_mb() -> int:
        status = Path("/proc/self/status").read_text().splitlines()
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1]) // 1024

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(paths=PathSettings(store_dir=Path(tmp) / "store"))
        info = embedding_model_info(settings)
        build_store(settings, chunks, passage_texts())
        rag.search.retrieval.RELEASE_GRACE_S = 0.0
        rag.search.retrieval.FRESH_MAX = -1  # every write reopens the store (as past FRESH_MAX writes since the last)
        if not release:
            rag.search.retrieval.release_system = lambda system: False
        live = rag.search.retrieval.LiveRetriever(settings, load_embedder(settings, info), info)
        live.search("coronavirus transmission")
        gc.collect()
        row = {"chunks": chunks, "release": release, "reopens": [0], "rss_mb": [rss_mb()]}
        row["open_files"] = [len(os.listdir("/proc/self/fd"))]
        for i in range(1, reopens + 1):
            (settings.paths.store_dir / CHANGE_MARKER).write_text(uuid.uuid4().hex)  # another process wrote
            live.search("coronavirus transmission")
            if i % 10 == 0:
                gc.collect()
                row["reopens"].append(i)
                row["rss_mb"].append(rss_mb())
                row["open_files"].append(len(os.listdir("/proc/self/fd")))
        print(json.dumps(row), flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[100_000, 1_000_000])
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--tantivy", action="store_true", help="also time a Tantivy index on the same chunks")
    ap.add_argument("--hybrid", type=int, nargs="*", default=[], help="stores of these sizes: a new reader process")
    ap.add_argument("--keep", type=Path, help="--hybrid: build the stores in this folder and keep them (reused)")
    ap.add_argument("--reader", nargs=2, help=argparse.SUPPRESS)  # store folder, start time (child process)
    ap.add_argument("--write-one", type=Path, help=argparse.SUPPRESS)  # store folder (another writer)
    ap.add_argument("--fresh-id", default="fresh", help=argparse.SUPPRESS)  # the chunk it writes
    ap.add_argument("--reopens", type=int, default=0)
    ap.add_argument("--reopen-chunks", type=int, default=20_000)
    ap.add_argument("--release", choices=["on", "off"], default="on")
    args = ap.parse_args()
    if args.write_one:
        return write_one(args.write_one, args.fresh_id)
    if args.reader:
        row = hybrid_reader(Path(args.reader[0]), float(args.reader[1]), args.queries)
        return print(json.dumps(row), flush=True)
    for size in args.hybrid:
        print(json.dumps(hybrid_at_scale(size, args.queries, args.keep)), flush=True)
    if args.reopens:
        reopen_release(args.reopen_chunks, args.reopens, args.release == "on")
    if not args.sizes:
        return
    base = passage_texts()
    queries = real_questions(args.queries)
    print(f"{len(base)} distinct passages, {len(queries)} queries", flush=True)
    for size in args.sizes:
        print(json.dumps(bench_size(size, base, queries)), flush=True)
        if args.tantivy:
            print(json.dumps(tantivy_row(size, base, queries)), flush=True)


if __name__ == "__main__":
    main()
