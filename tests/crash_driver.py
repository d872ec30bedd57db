"""Run a real-store ingest with the fake embedder in its own process, so a test can kill -9 it.

    python -m tests.crash_driver STORE_DIR CORPUS [DELAY_PER_BATCH]
Prints "ready" once it holds the ingest lock, then one line per embedded batch. With CRASH_CHROMA=PORT:COLLECTION
in the environment it writes to that collection of a Chroma server on 127.0.0.1 instead of STORE_DIR.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ingest.pipeline import ProgressListener
from rag.search.writer_lock import ingest_lock
from tests.conftest import make_settings
from tests.fakes import fake_ingestor


class Printer(ProgressListener):
    def chunks_embedded(self, count: int) -> None:
        print(f"embedded {count}", flush=True)


def main() -> int:
    store_dir, corpus = Path(sys.argv[1]), Path(sys.argv[2])
    delay = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
    settings = make_settings(store_dir.parent)
    settings.paths.store_dir = store_dir
    settings.embedding.flush_chunks = 4
    if os.environ.get("CRASH_CHROMA"):
        port, collection = os.environ["CRASH_CHROMA"].split(":")
        settings.store.mode, settings.store.port, settings.store.collection = "http", int(port), collection
    with ingest_lock(store_dir):
        print("ready", flush=True)
        ingestor, _ = fake_ingestor(settings, delay=delay, progress=Printer())
        report = ingestor.run([corpus])
    print(f"done added={len(report.added)} updated={len(report.updated)} removed={len(report.removed)}", flush=True)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
