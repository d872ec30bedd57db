"""Ingest benchmark: throughput, memory, and two ratios against the raw libraries in the same run.

1. Full ingest of a corpus (default: the FinanceBench PDFs) through our pipeline into a fresh store:
   pages/s, chunks/s, peak RSS.
2. Raw ``SentenceTransformer.encode`` on exactly the chunk texts we stored (same model, same batch
   size): our embedding throughput / raw throughput (target >= 0.9), and end to end / raw.
3. Unchanged re-ingest (fresh ingestor, in process, and the real CLI in a new process) over the full
   ingest time (target <= 0.02).

    .venv/bin/python benchmarks/ingest_bench.py [CORPUS] [--limit N]
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEFAULT_CORPUS = ROOT.parent / "shared" / "eval" / "financebench_dev" / "pdfs"


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("corpus", nargs="?", type=Path, default=DEFAULT_CORPUS)
    ap.add_argument("--limit", type=int, help="only the N smallest files (quick runs)")
    args = ap.parse_args()

    from ingest.pipeline import build_ingestor
    from rag.embedding import embedding_model_info
    from rag.settings import PathSettings, Settings
    from rag.store import drop_cached_stores

    tmp = Path(tempfile.mkdtemp(prefix="sourcier-bench-"))
    corpus = tmp / "corpus"
    files = sorted((p for p in args.corpus.iterdir() if p.is_file()), key=lambda p: p.stat().st_size)
    corpus.mkdir()
    for f in files[: args.limit] if args.limit else files:
        shutil.copy(f, corpus)
    settings = Settings(paths=PathSettings(store_dir=tmp / "store"))

    # 1. full ingest
    t0 = time.perf_counter()
    ingestor = build_ingestor(settings)
    report = ingestor.run([corpus])
    full_s = time.perf_counter() - t0
    rss_after_ingest = peak_rss_mb()

    # 2. raw sentence-transformers on the very same texts
    texts = ingestor.store.collection.get(include=["documents"])["documents"]
    from sentence_transformers import SentenceTransformer

    info = embedding_model_info(settings)
    raw_model = SentenceTransformer(str(info.path), device="cpu")
    raw_model.encode(texts[:64], batch_size=settings.embedding.batch_size)  # warm-up, as ours had its first batch
    t0 = time.perf_counter()
    raw_model.encode(texts, batch_size=settings.embedding.batch_size, normalize_embeddings=True)
    raw_s = time.perf_counter() - t0

    # 3. unchanged re-ingest, in process and through the CLI
    drop_cached_stores()
    t0 = time.perf_counter()
    again = build_ingestor(settings).run([corpus])
    rerun_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    cli = subprocess.run(
        [sys.executable, "-m", "ingest", str(corpus), "--store", str(settings.paths.store_dir), "-q"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    cli_s = time.perf_counter() - t0
    assert cli.returncode in (0, 1) and not again.added and not again.updated, "re-ingest did work"

    n = report.chunks_written
    ours_embed = n / report.embed_seconds
    raw_rate = len(texts) / raw_s
    figures = {
        "files": len(report.added),
        "failed": len(report.failed),
        "pages": report.pages,
        "chunks": n,
        "full_ingest_s": round(full_s, 1),
        "pages_per_s": round(report.pages / full_s, 2),
        "chunks_per_s_end_to_end": round(n / full_s, 2),
        "chunks_per_s_embedding_stage": round(ours_embed, 2),
        "raw_encode_chunks_per_s": round(raw_rate, 2),
        "ratio_embedding_ours_over_raw": round(ours_embed / raw_rate, 3),
        "ratio_end_to_end_over_raw": round((n / full_s) / raw_rate, 3),
        "peak_rss_mb_after_ingest": round(rss_after_ingest, 0),
        "unchanged_reingest_s": round(rerun_s, 2),
        "unchanged_reingest_cli_s": round(cli_s, 2),
        "ratio_unchanged_over_full": round(rerun_s / full_s, 4),
        "ratio_unchanged_cli_over_full": round(cli_s / full_s, 4),
    }
    print(json.dumps(figures, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
