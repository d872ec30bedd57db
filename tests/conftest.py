from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devkit import REPO, SAMPLE_DATA  # noqa: F401  (one definition, shared with the benchmarks)
from rag.settings import ChunkingSettings, PathSettings, Settings


def make_settings(tmp_path: Path, **chunking) -> Settings:
    return Settings(
        # models/ of the repository: the ONNX copy of the embedder is exported there once, as by the set-up
        paths=PathSettings(docs_dir=tmp_path / "docs", store_dir=tmp_path / "store", model_dir=REPO / "models"),
        chunking=ChunkingSettings(**({"chunk_tokens": 60, "overlap_tokens": 10} | chunking)),
    )


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    """A copy of the sample documents, free to modify."""
    dst = tmp_path / "corpus"
    shutil.copytree(SAMPLE_DATA, dst)
    return dst
