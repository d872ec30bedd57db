"""Issue 36's logic with fakes: the metrics of a relevance model (AUC, Platt scaling, the decline cut, the
reliability table), the calibration file a model folder carries, and what the answerer does with a calibrated
reranker's scores (the decline gate, the adaptive passage count)."""

from __future__ import annotations

import json
import math
import random

import pytest

from evaluation.relevance_metrics import (
    Ranked,
    auc,
    brier,
    declined,
    fit_platt,
    recall_at,
    reliability,
    sigmoid,
    threshold_for,
    tops,
)
from rag.answering.answer import Answerer
from rag.errors import ModelFileError
from rag.search.rerank import PACKAGED_POINTS, OperatingPoints, operating_points, read_calibration, read_count
from rag.search.retrieval import Retriever
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor


def test_auc_counts_ties_as_half_and_orders_right():
    assert auc([3, 4], [1, 2]) == 1.0
    assert auc([1, 2], [3, 4]) == 0.0
    assert auc([1, 1], [1, 1]) == 0.5
    assert auc([2, 0], [1]) == 0.5
    assert math.isnan(auc([], [1]))


def test_platt_scaling_recovers_a_known_calibration_and_never_falls():
    rng = random.Random(36)
    logits = [rng.uniform(-8, 8) for _ in range(4000)]
    labels = [rng.random() < sigmoid(0.5 * x - 1.0) for x in logits]
    a, b = fit_platt(logits, labels)
    assert a == pytest.approx(0.5, abs=0.08) and b == pytest.approx(-1.0, abs=0.15)
    probs = [sigmoid(a * x + b) for x in sorted(logits)]
    assert probs == sorted(probs)  # calibration is monotone: it never reorders passages
    assert brier(probs, [True] * len(probs)) >= 0
    # separable data stays finite (the L2 penalty, the damped steps) and keeps the order
    a, b = fit_platt([-12.0, -9.0, 8.0, 11.0], [False, False, True, True])
    assert math.isfinite(a) and math.isfinite(b) and a > 0


def test_the_decline_cut_declines_at_most_the_share_of_answerable_questions():
    answerable = [i / 100 for i in range(100)]
    cut = threshold_for(answerable, 0.10)
    assert declined(answerable, cut) <= 0.10
    assert declined(answerable, cut + 0.011) > 0.10  # the highest such cut
    rows = [Ranked("s", [0.9, 0.2, 0.1], [True, False, False]), Ranked("s", [0.3, 0.8], [True, False])]
    assert recall_at(rows, 1) == 0.5 and recall_at(rows, 2) == 1.0
    assert tops(rows) == ([0.9, 0.8], [0.2, 0.8])  # each answerable question and its gold-removed twin


def test_reliability_bins_hold_every_probability_once():
    probs = [0.05, 0.15, 0.95, 1.0, 0.55]
    rows = reliability(probs, [False, False, True, True, False])
    assert sum(n for _, n, _, _ in rows) == len(probs)
    assert rows[-1][0] == "0.9-1.0" and rows[-1][1] == 2 and rows[-1][3] == 1.0


def test_the_model_reads_the_best_passage_and_the_next_ones_while_they_are_likely():
    assert read_count([0.9, 0.5, 0.2, 0.1], 0.3) == 2
    assert read_count([0.1, 0.05], 0.3) == 1  # the best is always read (the decline gate is separate)
    assert read_count([0.9, 0.8], 0.0) == 2
    assert read_count([], 0.3) == 0


def test_a_calibration_file_gives_platt_and_the_operating_points(tmp_path):
    path = tmp_path / "calibration.json"
    path.write_text(json.dumps({"platt": [0.6, -2.1], "min_relevance": 0.12, "min_passage_relevance": 0.3}))
    assert read_calibration(path) == (0.6, -2.1, OperatingPoints(0.12, 0.3))
    path.write_text(json.dumps({"platt": [-0.6, 1.0], "min_relevance": 0.1, "min_passage_relevance": 0.3}))
    with pytest.raises(ModelFileError, match="must be positive"):
        read_calibration(path)
    path.write_text("{not json")
    with pytest.raises(ModelFileError, match="calibration.json cannot be read"):
        read_calibration(path)


class Calibrated:
    """A reranker with its own operating points, scoring passages by a fixed table (else 0.01)."""

    name = "calibrated"
    points = OperatingPoints(min_relevance=0.2, min_passage_relevance=0.4)

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table

    def score(self, question, passages):
        return [next((v for k, v in self.table.items() if k in p), 0.01) for p in passages]


def test_the_settings_override_the_rerankers_own_points_which_override_the_packaged_ones(settings):
    assert operating_points(settings, None) == PACKAGED_POINTS
    assert operating_points(settings, Calibrated({})) == Calibrated.points
    settings.retrieval.min_rerank_score = 0.5
    settings.retrieval.min_passage_relevance = 0.0
    assert operating_points(settings, Calibrated({})) == OperatingPoints(0.5, 0.0)


@pytest.fixture
def store(settings, corpus):
    fake_ingestor(settings)[0].run([corpus])
    settings.retrieval.min_similarity = 0.0
    return fake_ingestor(settings)[0].store


def test_one_clearly_right_passage_is_all_the_model_reads(settings, store):
    llm = FakeLLM(["It lasted 47 minutes [1]."] * 2)
    scorer = Calibrated({"47 minutes": 0.93})
    answer = Answerer(settings, Retriever(store, FakeEmbedder(), settings, scorer), llm).answer(
        "How long did the storage outage last?"
    )
    assert len(answer.sources) == 1 and "47 minutes" in answer.sources[0].passage.text
    settings.retrieval.min_passage_relevance = 0.0  # the setting restores k passages
    answer = Answerer(settings, Retriever(store, FakeEmbedder(), settings, scorer), llm).answer(
        "How long did the storage outage last?"
    )
    assert len(answer.sources) == settings.retrieval.k


def test_a_calibrated_reranker_declines_below_its_own_cut_before_the_model(settings, store):
    llm = FakeLLM(["should not be used"])
    answer = Answerer(settings, Retriever(store, FakeEmbedder(), settings, Calibrated({})), llm).answer(
        "How long did the storage outage last?"
    )
    assert not answer.found and llm.prompts == [] and answer.sources  # the closest passages are still shown
