"""Deterministic stand-ins for the heavy models, for fast unit tests (and the crash-test driver)."""

from __future__ import annotations

import hashlib
import math
import re
import time
from pathlib import Path

from rag.embedding import EmbeddingModelInfo

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)

FAKE_INFO = EmbeddingModelInfo(name="fake-hash-embedder", path=Path("fake"), dimension=16, max_seq_length=130)


class FakeCounter:
    """One token per word or punctuation mark."""

    def count(self, text: str) -> int:
        return len(_TOKEN.findall(text))

    def split_offsets(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        spans = [m.span() for m in _TOKEN.finditer(text)]
        return [(g[0][0], g[-1][1]) for g in (spans[i : i + max_tokens] for i in range(0, len(spans), max_tokens))]


class FakeEmbedder:
    """Bag-of-words hashed into 16 dimensions, normalized: similar texts get similar vectors."""

    def __init__(self, delay: float = 0.0) -> None:
        self.info = FAKE_INFO
        self.delay = delay
        self.calls: list[int] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        if self.delay:
            time.sleep(self.delay)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)

    @staticmethod
    def _vector(text: str) -> list[float]:
        v = [0.0] * FAKE_INFO.dimension
        for word in _TOKEN.findall(text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % FAKE_INFO.dimension] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v] if any(v) else [1.0] + [0.0] * (FAKE_INFO.dimension - 1)


def fake_ingestor(settings, delay: float = 0.0, progress=None):
    """An Ingestor over the real Chroma store in settings, with the fake tokenizer and embedder."""
    from ingest.pipeline import Ingestor
    from rag.store import open_store

    embedder = FakeEmbedder(delay)
    ingestor = Ingestor(
        settings,
        open_store(settings, FAKE_INFO),
        FAKE_INFO,
        counter_factory=FakeCounter,
        embedder_factory=lambda: embedder,
        progress=progress,
    )
    return ingestor, embedder


def store_snapshot(store) -> dict[str, tuple]:
    """Everything that defines a store's content, minus the ingest time stamp."""
    got = store.collection.get(include=["documents", "metadatas", "embeddings"])
    snap = {}
    for cid, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True):
        meta = {k: v for k, v in meta.items() if k != "ingested_at"}
        snap[cid] = (doc, tuple(sorted(meta.items())), tuple(round(float(x), 5) for x in emb))
    return snap
