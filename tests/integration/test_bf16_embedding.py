"""The packaged embedding model in bfloat16, for real: its vectors agree with float32 (so a store it writes is
searched with the float32 ONNX copy), a model that disagrees is refused or, under 'auto', replaced by float32,
and an ingest's workers use it for bulk work only, as their report says."""

from __future__ import annotations

import logging

import numpy as np
import pytest

import rag.machine
import rag.models.embedding
from ingest.pipeline import ingest_paths
from rag.errors import ModelFileError
from rag.models.embedding import Bf16Embedder, SentenceTransformerEmbedder, embedding_model_info, load_embedder
from rag.search.store import open_store
from rag.text import search_text
from tests.conftest import make_settings

pytestmark = pytest.mark.integration

TEXTS = [
    "What were the capital expenditures in 2022?",
    "Capital expenditures were 1,577 million dollars, up from 1,384 million.",
    "Le télétravail est possible deux jours par semaine après accord du responsable.",
    "Les frais de déplacement sont remboursés sur présentation des justificatifs.",
    "The survey counted 214 species of birds along the river in spring.",
    "Severe acute respiratory syndrome coronavirus 2 binds the ACE2 receptor through its spike protein, "
    "which the host protease TMPRSS2 primes; blocking either step reduced infection of lung cells in vitro.",
]


@pytest.fixture(scope="module")
def info(tmp_path_factory):
    return embedding_model_info(make_settings(tmp_path_factory.mktemp("s")))


def test_bf16_vectors_agree_with_float32(info):
    bf16 = Bf16Embedder(info)
    assert bf16.runtime == "torch-bf16 on cpu"
    assert bf16.mean_cosine >= rag.models.embedding.BF16_MIN_MEAN_COSINE and bf16.min_cosine >= 0.999
    ours = np.asarray(bf16.embed_documents(TEXTS))
    reference = np.asarray(SentenceTransformerEmbedder(info).embed_documents(TEXTS))
    assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-3)
    cosines = (ours * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines
    # what a search sees: each question's passages rank the same against float32 questions
    for q in (0, 2):
        assert np.argsort(-(ours @ reference[q])).tolist() == np.argsort(-(reference @ reference[q])).tolist()
    # the same text gives the same vector again (one process, same batch)
    assert np.array_equal(ours, np.asarray(bf16.embed_documents(TEXTS)))


def test_a_model_that_disagrees_in_bf16_is_refused_when_asked_for(info, tmp_path, monkeypatch):
    monkeypatch.setattr(rag.models.embedding, "BF16_MIN_MEAN_COSINE", 1.01)  # stricter than bfloat16 can be
    settings = make_settings(tmp_path)
    settings.embedding.runtime = "torch-bf16"
    with pytest.raises(ModelFileError, match=rf"{info.name} in bfloat16 disagrees .* use embedding.runtime = 'onnx'"):
        load_embedder(settings, info)


def test_under_auto_a_disagreeing_model_is_embedded_in_float32(info, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(rag.models.embedding, "BF16_MIN_MEAN_COSINE", 1.01)
    monkeypatch.setattr(rag.machine, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    settings = make_settings(tmp_path)
    with caplog.at_level(logging.WARNING, logger="rag.models.embedding"):
        embedder = load_embedder(settings, info, bulk=True)
    assert embedder.runtime == "onnx on cpu"
    assert "disagrees" in caplog.text and "float32 instead" in caplog.text


@pytest.mark.parametrize("bulk_mb,bulk", [(0.0, True), (1000.0, False)])
def test_ingest_workers_embed_in_bf16_for_bulk_work_only(corpus, tmp_path, bulk_mb, bulk):
    settings = make_settings(tmp_path)
    settings.ingest.workers = 2
    settings.ingest.bulk_mb = bulk_mb
    report = ingest_paths([corpus], settings)
    assert report.ok and report.chunks_written > 20
    # the workers decide by their own CPU: bfloat16 where it multiplies in hardware, float32 elsewhere
    expected = "torch-bf16 on cpu" if bulk and rag.machine.bf16_in_hardware() else "onnx on cpu"
    assert report.embedded_with == [expected]

    # whichever it was, the stored vectors are the float32 ONNX copy's (what every search embeds with)
    store = open_store(settings, embedding_model_info(settings), create=False)
    got = store.collection.get(include=["documents", "metadatas", "embeddings"])
    texts = [search_text(d, m.get("context", "")) for d, m in zip(got["documents"], got["metadatas"], strict=True)]
    reference = np.asarray(load_embedder(settings).embed_documents(texts))
    cosines = (np.asarray(got["embeddings"]) * reference).sum(axis=1)
    assert cosines.min() >= 0.9999, cosines.min()


def test_an_ingest_starts_the_workers_its_memory_holds(corpus, tmp_path, monkeypatch):
    import ingest.pipeline
    import rag.settings
    from ingest.workers import MAIN_PROCESS_MB
    from rag.models.embedding import TORCH_WORKER_MB

    # a 2-core machine with AMX whose free memory holds one bfloat16 worker, or four float32 ONNX ones
    monkeypatch.setattr(rag.settings, "available_cores", lambda: 2)
    monkeypatch.setattr(rag.machine, "cpu_flags", lambda: frozenset({"amx_bf16"}))
    free = (MAIN_PROCESS_MB + TORCH_WORKER_MB + 300) * 2**20
    monkeypatch.setattr(ingest.pipeline, "available_memory", lambda: free)
    settings = make_settings(tmp_path)
    settings.ingest.workers = None
    settings.ingest.bulk_mb = 0.0
    report = ingest_paths([corpus], settings)
    assert report.ok and report.chunks_written > 20
    # two float32 workers beat one in bfloat16: that is what ran, and the report says why
    assert report.workers == 2 and report.embedded_with == ["onnx on cpu"]
    assert len(report.notes) == 1 and "2 workers with onnx instead of torch-bf16" in report.notes[0]
