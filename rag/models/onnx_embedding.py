"""The sentence-transformers embedding model run by ONNX Runtime, without torch at run time.

The ONNX copies are exported once from the weights already on disk (no hub), into
``paths.model_dir/embedding/<model>/``: ``model.onnx`` (float32) and ``model-int8.onnx`` (weights
quantized to INT8 per channel, dynamic activations). Each export is checked against the torch model
on a fixed set of English and French sentences and refused when the vectors disagree (mean cosine
below :data:`MIN_MEAN_COSINE`), so that a store embedded with one runtime keeps working with the
other: the store records the model, not the runtime. ``manifest.json`` records the source weights
(size and modification time: a changed model folder is exported again) and the agreement measured.

At run time only ``onnxruntime`` (0.2 s to import) and ``tokenizers`` are loaded, against 7 s for
sentence-transformers and torch: a new process answers its first search seconds sooner, and the
INT8 copy embeds about 1.6x faster than torch on CPU (docs/measurements.md, benchmarks/ingest_bench.py).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from langchain_core.embeddings import Embeddings

from rag.errors import ModelFileError, SettingsError
from rag.machine import available_cores
from rag.models.embedding_base import CHECK_SENTENCES, EmbeddingModelInfo, tokenizer_file

log = logging.getLogger(__name__)

RUNTIMES = ("onnx", "onnx-int8")
FILE_NAMES = {"onnx": "model.onnx", "onnx-int8": "model-int8.onnx"}
MIN_MEAN_COSINE = {"onnx": 0.9999, "onnx-int8": 0.99}
MANIFEST = "manifest.json"
EXPORT_FORMAT = 1  # bump when the exported graph changes: older exports are redone
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")


def onnx_dir(model_dir: Path, info: EmbeddingModelInfo) -> Path:
    """Where the ONNX copies of ``info``'s model live."""
    return Path(model_dir) / "embedding" / info.name


def _weights(info: EmbeddingModelInfo) -> Path:
    for name in WEIGHT_FILES:
        if (info.path / name).is_file():
            return info.path / name
    raise ModelFileError(f"no weights file ({' or '.join(WEIGHT_FILES)}) in the embedding model folder {info.path}")


def _source_signature(info: EmbeddingModelInfo) -> dict[str, Any]:
    weights = _weights(info)
    st = weights.stat()
    return {"weights": str(weights.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _manifest(folder: Path) -> dict[str, Any]:
    try:
        return dict(json.loads((folder / MANIFEST).read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def _current(folder: Path, info: EmbeddingModelInfo, runtime: str) -> bool:
    manifest = _manifest(folder)
    return (
        manifest.get("format") == EXPORT_FORMAT
        and manifest.get("source") == _source_signature(info)
        and runtime in manifest.get("files", {})
        and (folder / FILE_NAMES[runtime]).is_file()
    )


def ensure_onnx_model(model_dir: Path, info: EmbeddingModelInfo, runtime: str) -> Path:
    """The checked ONNX file of ``info`` for ``runtime``, exported first when missing or stale.

    Exporting loads torch once (about 10 s for all-MiniLM-L6-v2); processes that start together wait
    for one export (a lock file) instead of writing the same files twice.
    """
    if runtime not in RUNTIMES:
        raise ValueError(runtime)
    folder = onnx_dir(model_dir, info)
    if _current(folder, info, runtime):
        return folder / FILE_NAMES[runtime]
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ModelFileError(f"cannot create {folder} for the ONNX embedding model: {exc.strerror or exc}") from None
    with _export_lock(folder):
        if not _current(folder, info, runtime):  # another process may have exported it meanwhile
            export_onnx(info, folder)
    return folder / FILE_NAMES[runtime]


@contextmanager
def _export_lock(folder: Path):
    with open(folder / ".export.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def export_onnx(info: EmbeddingModelInfo, folder: Path) -> dict[str, Any]:
    """Export ``info``'s model to ONNX (float32 and INT8) in ``folder``, check both, write the manifest."""
    started = time.perf_counter()
    print(f"exporting the embedding model {info.name} to ONNX once, into {folder} ...", file=sys.stderr)
    try:
        import torch
        from transformers import AutoModel
    except ImportError as exc:
        raise ModelFileError(f"exporting the embedding model to ONNX needs torch and transformers: {exc}") from None
    pooling = _pooling_mode(info)
    try:
        # eager attention exports as plain MatMul/Softmax, which ONNX Runtime fuses into its Attention kernel
        model = AutoModel.from_pretrained(str(info.path), local_files_only=True, attn_implementation="eager").eval()
    except Exception as exc:  # the library raises many types for a broken folder
        raise ModelFileError(f"cannot load the embedding model from {info.path} to export it: {exc}") from None
    inputs = ["input_ids", "attention_mask"]
    if int(getattr(model.config, "type_vocab_size", 0) or 0) > 0:
        inputs.append("token_type_ids")
    wrapped = _pooled_module(model, pooling, inputs)
    sample = _tokenize(_tokenizer(info), CHECK_SENTENCES[:2], inputs)
    args = tuple(torch.from_numpy(sample[name]) for name in inputs)
    files: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(dir=folder, prefix=".export-") as tmp:
        fp32 = Path(tmp) / FILE_NAMES["onnx"]
        axes = {name: {0: "batch", 1: "tokens"} for name in inputs} | {"sentence_embedding": {0: "batch"}}
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporter's notes on its own internals, not the user's business
            torch.onnx.export(
                wrapped, args, str(fp32), dynamo=False, input_names=inputs,
                output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=17,
            )  # fmt: skip
        int8 = Path(tmp) / FILE_NAMES["onnx-int8"]
        _quantize(fp32, int8)
        reference = _torch_vectors(wrapped, info, inputs)
        for runtime, path in (("onnx", fp32), ("onnx-int8", int8)):
            vectors = OnnxEmbedder(info, path).embed_documents(list(CHECK_SENTENCES))
            cosines = [sum(a * b for a, b in zip(u, v, strict=True)) for u, v in zip(vectors, reference, strict=True)]
            mean = sum(cosines) / len(cosines)
            if mean < MIN_MEAN_COSINE[runtime]:
                raise ModelFileError(
                    f"the {runtime} copy of {info.name} disagrees with the torch model (mean cosine {mean:.4f} "
                    f"< {MIN_MEAN_COSINE[runtime]}): use embedding.runtime = 'torch' for this model"
                )
            os.replace(path, folder / FILE_NAMES[runtime])
            files[runtime] = {"mean_cosine": round(mean, 6), "min_cosine": round(min(cosines), 6)}
    manifest = {
        "format": EXPORT_FORMAT,
        "model": info.name,
        "source": _source_signature(info),
        "inputs": inputs,
        "pooling": pooling,
        "max_seq_length": info.max_seq_length,
        "torch": torch.__version__,
        "files": files,
        "seconds": round(time.perf_counter() - started, 1),
    }
    _write_atomic(folder / MANIFEST, json.dumps(manifest, indent=2))
    print(f"exported in {manifest['seconds']} s; agreement with torch: {files}", file=sys.stderr)
    return manifest


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _pooling_mode(info: EmbeddingModelInfo) -> str:
    config_file = info.path / "1_Pooling" / "config.json"
    if not config_file.is_file():
        return "mean"
    config = json.loads(config_file.read_text(encoding="utf-8"))
    if config.get("pooling_mode_mean_tokens"):
        return "mean"
    if config.get("pooling_mode_cls_token"):
        return "cls"
    raise ModelFileError(
        f"the embedding model in {info.path} pools its tokens in a way the ONNX export does not handle "
        f"({config_file}): use embedding.runtime = 'torch'"
    )


def _pooled_module(model: Any, pooling: str, inputs: list[str]) -> Any:
    import torch

    class Pooled(torch.nn.Module):
        """The transformer, its pooling and the L2 normalization, as one graph."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            named = dict(zip(inputs, tensors, strict=True))
            hidden = self.model(**named).last_hidden_state
            if pooling == "cls":
                pooled = hidden[:, 0]
            else:
                mask = named["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2, dim=1)

    return Pooled().eval()


def _torch_vectors(wrapped: Any, info: EmbeddingModelInfo, inputs: list[str]) -> list[list[float]]:
    """The reference vectors of the check sentences, one at a time (no padding) through torch."""
    import torch

    tokenizer = _tokenizer(info)
    out = []
    with torch.no_grad():
        for sentence in CHECK_SENTENCES:
            arrays = _tokenize(tokenizer, [sentence], inputs)
            out.append(wrapped(*(torch.from_numpy(arrays[n]) for n in inputs))[0].tolist())
    return out


def _quantize(source: Path, target: Path) -> None:
    """INT8 weights per output channel (per tensor loses too much: mean cosine 0.94 on all-MiniLM-L6-v2)."""
    try:
        import onnx
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as exc:
        raise ModelFileError(f"quantizing the ONNX embedding model needs the onnx package: {exc}") from None
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # its advice (to the root logger) to pre-process applies to static quantization
    try:
        quantize_dynamic(
            str(source), str(target), weight_type=QuantType.QInt8, per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )  # fmt: skip
    finally:
        root.setLevel(level)  # for the quantization only: every other warning of the process stays


def _tokenizer(info: EmbeddingModelInfo) -> Any:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file(info)))
    tokenizer.enable_truncation(info.max_seq_length)
    pad_id = tokenizer.token_to_id("[PAD]")
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tokenizer


def _tokenize(tokenizer: Any, texts: Sequence[str], inputs: list[str]) -> dict[str, Any]:
    import numpy as np

    encodings = tokenizer.encode_batch(list(texts))
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    arrays = {"input_ids": ids, "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64)}
    if "token_type_ids" in inputs:
        arrays["token_type_ids"] = np.array([e.type_ids for e in encodings], dtype=np.int64)
    return arrays


def providers_for(device: str, automatic: bool) -> tuple[str, ...]:
    """ONNX Runtime's execution providers for ``device``: CUDA's when asked for and present."""
    if device == "cpu":
        return ("CPUExecutionProvider",)
    import onnxruntime as ort

    if device == "cuda" and "CUDAExecutionProvider" in ort.get_available_providers():
        return ("CUDAExecutionProvider", "CPUExecutionProvider")
    if automatic:
        return ("CPUExecutionProvider",)
    raise SettingsError(
        f"embedding.device = {device!r} but this onnxruntime has no provider for it "
        f"({', '.join(ort.get_available_providers())}): use embedding.runtime = 'torch' or device 'cpu'"
    )


class OnnxEmbedder(Embeddings):
    """A LangChain ``Embeddings`` over an exported ONNX file: normalized vectors, same as the torch model's."""

    def __init__(
        self,
        info: EmbeddingModelInfo,
        model_file: Path,
        threads: int | None = None,
        providers: Sequence[str] = ("CPUExecutionProvider",),
    ) -> None:
        import onnxruntime as ort

        self.info = info
        self.model_file = Path(model_file)
        kind = "onnx-int8" if self.model_file.name == FILE_NAMES["onnx-int8"] else "onnx"
        self.runtime = f"{kind} on {'cuda' if 'CUDAExecutionProvider' in providers else 'cpu'}"
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        try:
            self._session = ort.InferenceSession(str(model_file), options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ModelFileError(f"cannot load the ONNX embedding model {model_file}: {exc}") from None
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._tokenizer = _tokenizer(info)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One text per run: a vector never depends on the texts embedded beside it (the INT8 copy quantizes
        its activations with one scale per run, padding included), and no time goes to padding: as fast as
        batches of 32 here (benchmarks/ingest_bench.py)."""
        out = []
        for text in texts:
            arrays = _tokenize(self._tokenizer, [text], self._inputs)
            out.append(self._session.run(None, arrays)[0][0].tolist())
        return out

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
