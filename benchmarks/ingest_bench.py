"""Ingest benchmark: end-to-end throughput per set-up, the embedding back-ends against the raw library.

1. End to end, each set-up in a fresh store through the real CLI (``python -m ingest``) in a new process,
   as a user runs it: pages/s, chunks/s, peak RSS of the process tree (workers included). Set-ups:
   ``torch/0`` (before: torch, files read in the main process), then the default runtime with 0 and N
   workers (``--workers``; with N workers and a CPU with AMX the default embeds in bfloat16),
   ``--float32`` the float32 ONNX copy with N workers (the default before bfloat16), ``--int8`` the INT8
   embedder, ``--ray`` a local Ray cluster of 2 workers.
   Ratios are against the first set-up of the same run.
2. The embedding back-ends on the very same chunk texts (a sample of the stored chunks, as embedded:
   context header + text): the raw ``SentenceTransformer.encode``, our torch, torch bfloat16, ONNX float32
   and ONNX INT8 embedders, and torch on a CUDA GPU where there is one (the report says so where not):
   chunks/s, ratio to raw, mean and minimum cosine against raw.
3. Unchanged re-run through the CLI over the fastest full ingest (target <= 0.02).

    .venv/bin/python benchmarks/ingest_bench.py [CORPUS] [--limit N] [--workers 0 1 2] [--ray]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT.parent / "shared" / "eval" / "financebench_dev" / "pdfs"


class TreePeak:
    """Peak resident memory of a process and its children, sampled every 0.1 s."""

    def __init__(self, pid: int) -> None:
        import psutil

        self.root = psutil.Process(pid)
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import psutil

        while not self._stop.wait(0.1):
            try:
                procs = [self.root, *self.root.children(recursive=True)]
                total = 0
                for p in procs:
                    with contextlib.suppress(psutil.Error):
                        total += p.memory_info().rss
                self.peak = max(self.peak, total)
            except psutil.Error:
                return

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**20


def cli_ingest(
    corpus: Path, store: Path, env: dict[str, str], extra: list[str] | None = None
) -> tuple[float, float, str]:
    """Seconds, peak MB and the embedders used ('torch-bf16 on cpu') of one ``python -m ingest`` run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", str(corpus), "--store", str(store), "--json", *(extra or [])],
        cwd=ROOT,
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    peak = TreePeak(proc.pid)
    out, err = proc.communicate()
    seconds = time.perf_counter() - t0
    mb = peak.stop()
    if proc.returncode not in (0, 1):  # 1: some files failed, which the report counts
        raise SystemExit(f"ingest failed ({proc.returncode}):\n{(out + err)[-3000:]}")
    return seconds, mb, " and ".join(json.loads(out)["embedded_with"]) or "-"


def store_counts(store: Path) -> tuple[int, int]:
    """Pages and chunks in a store (pages: distinct (source, page) pairs)."""
    from rag.models.embedding import embedding_model_info
    from rag.search.store import drop_cached_stores, open_store
    from rag.settings import PathSettings, Settings

    settings = Settings(paths=PathSettings(store_dir=store))
    st = open_store(settings, embedding_model_info(settings), create=False)
    pages, chunks = set(), 0
    for _, meta in st.iter_metadatas():
        pages.add((meta["source"], meta["page"]))
        chunks += 1
    drop_cached_stores()
    return len(pages), chunks


def end_to_end(corpus: Path, tmp: Path, setups: list[tuple[str, dict[str, str]]]) -> list[dict]:
    rows = []
    for name, env in setups:
        store = tmp / f"store-{name.replace('/', '-')}"
        seconds, mb, embedded_with = cli_ingest(corpus, store, env)
        pages, chunks = store_counts(store)
        rows.append({
            "setup": name, "seconds": round(seconds, 1), "pages": pages, "chunks": chunks,
            "pages_per_s": round(pages / seconds, 2), "chunks_per_s": round(chunks / seconds, 1),
            "peak_rss_mb": round(mb), "embedded_with": embedded_with, "store": str(store),
        })  # fmt: skip
        base = rows[0]["pages_per_s"]
        rows[-1]["ratio_to_first"] = round(rows[-1]["pages_per_s"] / base, 2)
        print(json.dumps(rows[-1]), flush=True)
    return rows


def embedding_backends(store: Path, sample: int, batch_size: int) -> list[dict]:
    """Each back-end on the same stored chunks (as embedded), against the raw sentence-transformers."""
    import numpy as np

    from rag.machine import cuda_present
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.store import open_store
    from rag.settings import EmbeddingSettings, PathSettings, Settings
    from rag.text import search_text

    settings = Settings(paths=PathSettings(store_dir=store))
    info = embedding_model_info(settings)
    got = open_store(settings, info, create=False).collection.get(limit=sample, include=["documents", "metadatas"])
    texts = [search_text(d, m.get("context", "")) for d, m in zip(got["documents"], got["metadatas"], strict=True)]

    from sentence_transformers import SentenceTransformer

    raw = SentenceTransformer(str(info.path), device="cpu", local_files_only=True)
    raw.encode(texts[:64], batch_size=batch_size)  # warm-up
    t0 = time.perf_counter()
    reference = raw.encode(texts, batch_size=batch_size, normalize_embeddings=True)
    raw_rate = len(texts) / (time.perf_counter() - t0)
    rows = [{"backend": "raw SentenceTransformer.encode", "chunks_per_s": round(raw_rate, 1), "ratio_to_raw": 1.0}]
    backends = [("torch", "cpu"), ("torch-bf16", "cpu"), ("onnx", "cpu"), ("onnx-int8", "cpu")]
    if cuda_present():
        backends.append(("torch", "cuda"))
    else:
        rows.append({"backend": "torch on cuda", "skipped": "no NVIDIA GPU on this machine"})
        print(json.dumps(rows[-1]), flush=True)
    for runtime, device in backends:
        s = Settings(
            paths=PathSettings(store_dir=store, model_dir=ROOT / "models"),
            embedding=EmbeddingSettings(runtime=runtime, device=device, batch_size=batch_size),
        )
        embedder = load_embedder(s, info)
        embedder.embed_documents(texts[:64])
        t0 = time.perf_counter()
        vectors = np.asarray(embedder.embed_documents(texts), dtype=np.float32)
        rate = len(texts) / (time.perf_counter() - t0)
        cos = (vectors * reference).sum(axis=1)
        rows.append({
            "backend": embedder.runtime, "chunks_per_s": round(rate, 1), "ratio_to_raw": round(rate / raw_rate, 2),
            "mean_cosine_to_raw": round(float(cos.mean()), 5), "min_cosine_to_raw": round(float(cos.min()), 5),
        })  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps(rows[0]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--limit", type=int, help="only the N smallest files (quick runs)")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="reading workers to compare")
    ap.add_argument("--no-baseline", action="store_true", help="skip the torch/0 set-up (the slowest)")
    ap.add_argument("--ray", action="store_true", help="also a local Ray cluster of 2 workers")
    ap.add_argument("--float32", action="store_true", help="also the float32 ONNX copy with the most workers")
    ap.add_argument("--int8", action="store_true", help="also the INT8 embedder with the most workers")
    ap.add_argument("--sample", type=int, default=2000, help="chunks for the embedding back-ends (0: skip them)")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="sourcier-bench-"))
    corpus = tmp / "corpus"
    files = sorted((p for p in args.corpus.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    corpus.mkdir()
    for f in files[: args.limit] if args.limit else files:
        shutil.copy(f, corpus)

    setups: list[tuple[str, dict[str, str]]] = []
    if not args.no_baseline:
        setups.append(("torch/0", {"SOURCIER_EMBEDDING__RUNTIME": "torch", "SOURCIER_INGEST__WORKERS": "0"}))
    for n in args.workers:
        setups.append((f"default/{n}", {"SOURCIER_INGEST__WORKERS": str(n)}))
    n = max(args.workers)
    if args.float32:
        setups.append((f"onnx/{n}", {"SOURCIER_EMBEDDING__RUNTIME": "onnx", "SOURCIER_INGEST__WORKERS": str(n)}))
    if args.int8:
        int8 = {"SOURCIER_EMBEDDING__RUNTIME": "onnx-int8", "SOURCIER_INGEST__WORKERS": str(n)}
        setups.append((f"onnx-int8/{n}", int8))
    if args.ray:
        setups.append(("ray/2", {"SOURCIER_INGEST__RAY_ADDRESS": "local:2"}))
    rows = end_to_end(corpus, tmp, setups)

    fastest = min(rows, key=lambda r: r["seconds"])
    rerun_s, _, _ = cli_ingest(corpus, Path(fastest["store"]), {})
    rerun = {"unchanged_rerun_cli_s": round(rerun_s, 2), "ratio_to_fastest": round(rerun_s / fastest["seconds"], 4)}
    print(json.dumps(rerun), flush=True)

    backends = embedding_backends(Path(rows[0]["store"]), args.sample, 32) if args.sample else []
    figures = {"corpus": str(args.corpus), "files": len(list(corpus.iterdir())), "cores": os.cpu_count(),
               "end_to_end": rows, "unchanged": rerun, "embedding": backends}  # fmt: skip
    print(json.dumps(figures, indent=2))
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
