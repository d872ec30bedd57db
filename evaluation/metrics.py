"""Scores for retrieval and answers, as the question-answering literature computes them.

Retrieval: a ranked list of chunk ids against the set of gold chunk ids (recall@k, reciprocal rank,
nDCG@k with binary relevance). Answers: SQuAD's exact match and token F1 (lower case, no punctuation,
no articles, in English and French), ROUGE-L on the same tokens, containment of a reference in the
answer (fairer to a model that answers in full sentences), and a numeric match with a relative
tolerance for financial figures.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence

_ARTICLES = {
    "en": r"\b(a|an|the)\b",
    "fr": r"\b(le|la|les|l|un|une|des|du|de|d)\b",
}
_PUNCTUATION = set(string.punctuation) | {"«", "»", "’", "‘", "“", "”", "–", "—", "…"}


def normalize_answer(text: str, language: str = "en") -> str:
    """SQuAD normalization: lower case, punctuation and articles removed, blanks collapsed."""
    text = unicodedata.normalize("NFC", text.lower())
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = re.sub(_ARTICLES.get(language, _ARTICLES["en"]), " ", text)
    return " ".join(text.split())


def exact_match(prediction: str, references: Sequence[str], language: str = "en") -> float:
    pred = normalize_answer(prediction, language)
    return float(any(pred == normalize_answer(r, language) for r in references))


def token_f1(prediction: str, references: Sequence[str], language: str = "en") -> float:
    """Best token-overlap F1 over the references."""
    pred = normalize_answer(prediction, language).split()
    return max((_f1(pred, normalize_answer(r, language).split()) for r in references), default=0.0)


def _f1(pred: list[str], ref: list[str]) -> float:
    if not pred or not ref:
        return float(pred == ref)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def rouge_l(prediction: str, references: Sequence[str], language: str = "en") -> float:
    """Best ROUGE-L F-measure (longest common subsequence of normalized tokens) over the references."""
    pred = normalize_answer(prediction, language).split()
    best = 0.0
    for ref_text in references:
        ref = normalize_answer(ref_text, language).split()
        lcs = _lcs(pred, ref)
        if lcs:
            p, r = lcs / len(pred), lcs / len(ref)
            best = max(best, 2 * p * r / (p + r))
    return best


def _lcs(a: list[str], b: list[str]) -> int:
    if not a or not b:
        return 0
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, 1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def contains_reference(prediction: str, references: Sequence[str], language: str = "en") -> float:
    """Whether a normalized reference occurs, on word boundaries, in the normalized prediction."""
    pred = f" {normalize_answer(prediction, language)} "
    return float(any((ref := normalize_answer(r, language)) and f" {ref} " in pred for r in references))


_NUMBER = re.compile(r"(?<![\w.])[-−]?\$?\(?\d[\d,]*(?:\.\d+)?\)?%?")


def numbers_in(text: str) -> list[float]:
    """Numbers written in a text: 1,234.5 / (12) / -3% / $0.66 (thousands separators dropped)."""
    values = []
    for token in _NUMBER.findall(text):
        negative = token.startswith(("-", "−")) or ("(" in token and ")" in token)
        digits = re.sub(r"[^\d.]", "", token)
        try:
            value = float(digits)
        except ValueError:
            continue
        values.append(-value if negative else value)
    return values


def numeric_match(prediction: str, references: Sequence[str], tolerance: float = 0.01) -> float | None:
    """1.0 when a number of the prediction equals the reference's first number within ``tolerance``
    (relative), also across a factor of 100 (0.66 vs 66%); None when the reference holds no number."""
    wanted = [numbers_in(r)[0] for r in references if numbers_in(r)]
    if not wanted:
        return None
    got = numbers_in(prediction)
    for w in wanted:
        for g in got:
            for scale in (1.0, 100.0, 0.01):
                if math.isclose(g * scale, w, rel_tol=tolerance, abs_tol=1e-9):
                    return 1.0
    return 0.0


def first_relevant_rank(ranked: Sequence[str], gold: set[str]) -> int | None:
    """0-based rank of the first gold id in ``ranked``, or None."""
    return next((i for i, cid in enumerate(ranked) if cid in gold), None)


def recall_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """1.0 when a gold id is among the first ``k`` (success@k, as SQuAD-style retrieval reports it)."""
    rank = first_relevant_rank(ranked, gold)
    return float(rank is not None and rank < k)


def reciprocal_rank(ranked: Sequence[str], gold: set[str]) -> float:
    rank = first_relevant_rank(ranked, gold)
    return 0.0 if rank is None else 1.0 / (rank + 1)


def ndcg_at(ranked: Sequence[str], gold: set[str], k: int) -> float:
    """nDCG@k with binary relevance; the ideal ranking puts min(|gold|, k) gold ids first."""
    if not gold:
        return 0.0
    dcg = sum(1.0 / math.log2(i + 2) for i, cid in enumerate(ranked[:k]) if cid in gold)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(len(gold), k)))
    return dcg / ideal


def mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return sum(present) / len(present) if present else None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]
