"""The ONNX copies of the packaged embedding model, for real: exported from the weights on disk, checked
against torch, reused, redone when the model changes, and loaded in a process that never imports torch."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from rag.models.embedding import SentenceTransformerEmbedder, embedding_model_info, load_embedder
from rag.models.onnx_embedding import FILE_NAMES, MANIFEST, ensure_onnx_model, onnx_dir
from tests.conftest import REPO, make_settings

pytestmark = pytest.mark.integration

TEXTS = [
    "What were the capital expenditures in 2022?",
    "Capital expenditures were 1,577 million dollars, up from 1,384 million.",
    "Le télétravail est possible deux jours par semaine après accord du responsable.",
    "Les frais de déplacement sont remboursés sur présentation des justificatifs.",
    "The survey counted 214 species of birds along the river in spring.",
]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A fresh export into an empty folder (the repository's models/ is left alone)."""
    model_dir = tmp_path_factory.mktemp("models")
    settings = make_settings(tmp_path_factory.mktemp("s"))
    settings.paths.model_dir = model_dir
    info = embedding_model_info(settings)
    path = ensure_onnx_model(model_dir, info, "onnx-int8")
    return settings, info, path


def test_export_writes_both_copies_and_records_their_agreement(exported):
    settings, info, path = exported
    folder = onnx_dir(settings.paths.model_dir, info)
    assert path == folder / FILE_NAMES["onnx-int8"] and path.is_file()
    assert (folder / FILE_NAMES["onnx"]).stat().st_size > 3 * path.stat().st_size  # INT8 weights: a quarter
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["model"] == info.name and manifest["pooling"] == "mean"
    assert manifest["files"]["onnx"]["mean_cosine"] >= 0.9999
    assert manifest["files"]["onnx-int8"]["mean_cosine"] >= 0.99


@pytest.mark.parametrize("runtime,floor", [("onnx", 0.9999), ("onnx-int8", 0.98)])
def test_onnx_vectors_agree_with_the_torch_model(exported, runtime, floor):
    settings, info, _ = exported
    settings.embedding.runtime = runtime
    onnx = np.asarray(load_embedder(settings, info).embed_documents(TEXTS))
    torch = np.asarray(SentenceTransformerEmbedder(info).embed_documents(TEXTS))
    cosines = (onnx * torch).sum(axis=1)
    assert np.allclose(np.linalg.norm(onnx, axis=1), 1.0, atol=1e-4)
    assert cosines.min() >= floor, cosines
    # the ranking a search sees: each question's best passage is the same with both
    q = np.asarray(load_embedder(settings, info).embed_query(TEXTS[0]))
    assert int(np.argmax(onnx[1:] @ q)) == int(np.argmax(torch[1:] @ torch[0]))


def test_an_export_is_reused_and_redone_when_the_model_changes(exported):
    settings, info, path = exported
    folder = onnx_dir(settings.paths.model_dir, info)
    before = path.stat().st_mtime_ns
    assert ensure_onnx_model(settings.paths.model_dir, info, "onnx-int8") == path
    assert path.stat().st_mtime_ns == before  # current: not exported again
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["source"]["size"] += 1  # as if the model folder had been replaced by another version
    (folder / MANIFEST).write_text(json.dumps(manifest))
    ensure_onnx_model(settings.paths.model_dir, info, "onnx")
    assert path.stat().st_mtime_ns != before
    assert json.loads((folder / MANIFEST).read_text())["source"]["size"] == manifest["source"]["size"] - 1


def test_a_reader_with_the_onnx_runtime_never_imports_torch(exported):
    settings, _, _ = exported
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from rag.settings import PathSettings, Settings\n"
        "from rag.models.embedding import load_embedder\n"
        f"s = Settings(paths=PathSettings(model_dir={str(settings.paths.model_dir)!r}))\n"
        "v = load_embedder(s).embed_query('hello')\n"
        "assert len(v) == 384\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers') if m in sys.modules))\n"
        "print(round(time.perf_counter() - t, 2))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    imported, seconds = out.stdout.split("\n")[:2]
    assert imported == "[]", imported
    assert float(seconds) < 5, seconds  # torch and sentence-transformers alone take 7 s to import here


def test_workers_that_embed_write_the_store_one_process_writes(tmp_path, corpus):
    from ingest.pipeline import build_ingestor
    from tests.fakes import assert_same_indexes, store_snapshot

    snapshots, reports = [], []
    for workers in (0, 2):
        settings = make_settings(tmp_path)
        settings.paths.store_dir = tmp_path / f"store-{workers}"
        settings.ingest.workers = workers
        ingestor = build_ingestor(settings)
        assert ingestor.workers_embed  # the default runtime is light enough for every worker to load
        reports.append(ingestor.run([corpus]))
        snapshots.append(store_snapshot(ingestor.store))
    assert reports[0].embed_seconds > 0 and reports[1].embed_seconds == 0  # the workers embedded
    assert reports[0].added == reports[1].added and reports[0].chunks_written == reports[1].chunks_written
    alone, pooled = snapshots
    assert_same_indexes(alone, pooled)
    assert alone.keys() == pooled.keys()
    for cid, (doc, meta, vector) in alone.items():
        assert (doc, meta) == pooled[cid][:2]
        assert max(abs(a - b) for a, b in zip(vector, pooled[cid][2], strict=True)) < 1e-4, cid


def test_an_export_that_disagrees_with_torch_is_refused_and_never_used(tmp_path, monkeypatch):
    import rag.models.onnx_embedding
    from rag.errors import ModelFileError

    settings = make_settings(tmp_path)
    info = embedding_model_info(settings)
    monkeypatch.setitem(rag.models.onnx_embedding.MIN_MEAN_COSINE, "onnx-int8", 1.01)  # stricter than any INT8 copy
    with pytest.raises(ModelFileError, match="onnx-int8 copy of all-MiniLM-L6-v2 disagrees with the torch model"):
        ensure_onnx_model(tmp_path / "models", info, "onnx-int8")
    folder = onnx_dir(tmp_path / "models", info)
    assert not (folder / MANIFEST).exists() and not (folder / FILE_NAMES["onnx-int8"]).exists()
