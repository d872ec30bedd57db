"""The figures of a relevance model (issue 36), from each question's candidate scores: ranking (recall@1 / @3),
separation of answerable from unanswerable questions (AUC, the decline operating point), calibration (Platt
scaling fitted on the choose part, Brier score, reliability table) and the adaptive passage count.

An "unanswerable" question here is the on-topic case: an answerable question's own candidates with its gold
passages removed (what the search would return had the gold chunk never been stored), so the model must tell
"about the subject" from "holds the answer".
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Ranked:
    """One question's candidates: the model's raw scores (logits) and which candidates are gold."""

    set: str
    logits: list[float]
    gold: list[bool]

    @property
    def answerable(self) -> bool:
        return any(self.gold)

    def order(self) -> list[int]:
        return sorted(range(len(self.logits)), key=lambda i: -self.logits[i])

    def top_without_gold(self) -> float | None:
        rest = [x for x, g in zip(self.logits, self.gold, strict=True) if not g]
        return max(rest) if rest else None


def recall_at(rows: Sequence[Ranked], n: int) -> float:
    answerable = [r for r in rows if r.answerable]
    return sum(any(r.gold[i] for i in r.order()[:n]) for r in answerable) / max(len(answerable), 1)


def auc(positives: Sequence[float], negatives: Sequence[float]) -> float:
    """P(a positive scores above a negative), ties counting half (Mann-Whitney)."""
    if not positives or not negatives:
        return float("nan")
    values = sorted([(x, 1) for x in positives] + [(x, 0) for x in negatives])
    rank_sum, i = 0.0, 0
    while i < len(values):
        j = i
        while j < len(values) and values[j][0] == values[i][0]:
            j += 1
        mid = (i + 1 + j) / 2  # the tied values' mean rank (1-based)
        rank_sum += mid * sum(label for _, label in values[i:j])
        i = j
    p, q = len(positives), len(negatives)
    return (rank_sum - p * (p + 1) / 2) / (p * q)


def tops(rows: Sequence[Ranked]) -> tuple[list[float], list[float]]:
    """The best score of each answerable question, and of each one's gold-removed twin."""
    answerable = [r for r in rows if r.answerable]
    twins = [t for t in (r.top_without_gold() for r in answerable) if t is not None]
    return [max(r.logits) for r in answerable], twins


def threshold_for(answerable_tops: Sequence[float], share: float = 0.10) -> float:
    """The highest threshold that declines (best score below it) at most ``share`` of answerable questions."""
    ordered = sorted(answerable_tops)
    allowed = int(math.floor(share * len(ordered)))
    return ordered[allowed] if allowed < len(ordered) else ordered[-1]


def declined(scores: Sequence[float], threshold: float) -> float:
    return sum(s < threshold for s in scores) / max(len(scores), 1)


def sigmoid(x: float) -> float:
    return 1.0 / (1.0 + math.exp(-x)) if x >= 0 else math.exp(x) / (1.0 + math.exp(x))


def fit_platt(logits: Sequence[float], labels: Sequence[bool], l2: float = 1e-3) -> tuple[float, float]:
    """(a, b) of P(label) = sigmoid(a * logit + b), by Newton's method on the log-loss (a small L2 penalty
    keeps it finite on separable data). Platt's target smoothing ((n+ + 1) / (n+ + 2)) avoids over-confidence."""
    positives = sum(labels)
    negatives = len(labels) - positives
    hi, lo = (positives + 1) / (positives + 2), 1 / (negatives + 2)
    targets = [hi if y else lo for y in labels]

    def loss(a: float, b: float) -> float:
        total = 0.5 * l2 * a * a
        for x, t in zip(logits, targets, strict=True):
            z = a * x + b  # log(1 + e^z) - t * z, computed without overflow
            total += max(z, 0.0) + math.log1p(math.exp(-abs(z))) - t * z
        return total

    a, b = 1.0, 0.0
    current = loss(a, b)
    for _ in range(100):
        ga = gb = haa = hab = hbb = 0.0
        for x, t in zip(logits, targets, strict=True):
            p = sigmoid(a * x + b)
            w = p * (1 - p)
            ga += (p - t) * x
            gb += p - t
            haa += w * x * x
            hab += w * x
            hbb += w
        ga += l2 * a
        haa += l2
        det = haa * hbb - hab * hab
        if det <= 0:
            break
        da, db = (hbb * ga - hab * gb) / det, (haa * gb - hab * ga) / det
        step = 1.0  # damped: halve the step until the loss falls (a plain Newton step can overshoot)
        while step > 1e-6 and loss(a - step * da, b - step * db) > current:
            step /= 2
        if step <= 1e-6:
            break
        a, b = a - step * da, b - step * db
        previous, current = current, loss(a, b)
        if previous - current < 1e-10 * max(1.0, abs(previous)):
            break
    return a, b


def brier(probs: Sequence[float], labels: Sequence[bool]) -> float:
    return sum((p - float(y)) ** 2 for p, y in zip(probs, labels, strict=True)) / max(len(probs), 1)


def reliability(probs: Sequence[float], labels: Sequence[bool], bins: int = 10) -> list[tuple[str, int, float, float]]:
    """(bin, passages, mean predicted probability, share that hold the answer) for each non-empty bin."""
    rows = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(p, y) for p, y in zip(probs, labels, strict=True) if lo <= p < hi or (b == bins - 1 and p == 1.0)]
        if inside:
            mean_p = sum(p for p, _ in inside) / len(inside)
            observed = sum(float(y) for _, y in inside) / len(inside)
            rows.append((f"{lo:.1f}-{hi:.1f}", len(inside), mean_p, observed))
    return rows
