"""Run a question set against a corpus: ingest it into its own store, retrieve, answer, score.

Everything goes through the product's own code (the ingest pipeline, the retriever, the answerer), so
what is measured is what users get. The store lives in the run's work folder, one per chunking setup,
and later runs reuse it (the ingest is incremental).
"""

from __future__ import annotations

import random
import re
import resource
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evaluation import metrics as m
from evaluation.sets import Question
from rag.answering.answer import Answer, Answerer
from rag.answering.crosslingual import languages_to_search, translations_for
from rag.llm.base import ChatModel
from rag.models.embedding import embedder_kind, runtime_label, similarity_floor
from rag.search.rerank import OperatingPoints, operating_points
from rag.search.retrieval import Retriever
from rag.search.store import Store
from rag.settings import Settings
from rag.text import detect_language

KS = (1, 3, 5, 10)
# mode: (vector search, keyword search, cross-encoder reranking)
MODES = {
    "rerank": (True, True, True),
    "hybrid": (True, True, False),
    "vector": (True, False, False),
    "keyword": (False, True, False),
}
RERANK_THRESHOLDS = (0.0, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
THRESHOLDS = (0.0, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)


def _squash(text: str) -> str:
    return " ".join(text.split())


class GoldChunks:
    """Which chunks of the store hold each question's evidence (same document, and its text or page)."""

    def __init__(self, store: Store) -> None:
        self._by_document: dict[str, list[tuple[str, int, str]]] = {}
        texts = dict(store.iter_documents())
        for chunk_id, meta in store.iter_metadatas():
            entry = (chunk_id, int(meta.get("page", 0)), _squash(texts.get(chunk_id, "")))
            self._by_document.setdefault(str(meta.get("source", "")), []).append(entry)

    @property
    def documents(self) -> int:
        return len(self._by_document)

    @property
    def chunks(self) -> int:
        return sum(len(v) for v in self._by_document.values())

    def of(self, question: Question) -> set[str]:
        gold = set()
        for ev in question.evidence:
            wanted = _squash(ev.text) if ev.text else None
            for chunk_id, page, text in self._by_document.get(ev.document, []):
                if (ev.page is None or page == ev.page) and (wanted is None or wanted in text):
                    gold.add(chunk_id)
        return gold


def sample_questions(
    questions: Sequence[Question], limit: int | None, unanswerable: int | None, seed: int
) -> list[Question]:
    """A seeded sample: ``limit`` answerable questions and ``unanswerable`` others (all when None)."""
    rng = random.Random(seed)
    answerable = [q for q in questions if q.answerable]
    others = [q for q in questions if not q.answerable]
    if limit is not None and limit < len(answerable):
        answerable = rng.sample(answerable, limit)
    if unanswerable is not None and unanswerable < len(others):
        others = rng.sample(others, unanswerable)
    return answerable + others


def _translated(translator: ChatModel | None, store: Store, question: str, settings: Settings) -> dict[str, Any]:
    """The question's translations into the store's other languages and the time they took (none without
    a translator)."""
    if translator is None:
        return {}
    t0 = time.perf_counter()
    targets = languages_to_search(detect_language(question), store.languages())
    found = translations_for(translator, question, targets, settings.llm)
    return {"translations": found, "translate_ms": (time.perf_counter() - t0) * 1000}


def retrieval_row(
    retriever: Retriever, question: Question, gold: set[str], translated: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Recall and ranks of the passages found for the question (searched also as its ``translated``
    wordings: the ``translations`` and ``translate_ms`` of ``_translated``, kept in the row)."""
    translated = translated or {}
    t0 = time.perf_counter()
    passages = retriever.search(question.question, k=max(KS), translations=translated.get("translations") or None)
    row: dict[str, Any] = {"retrieval_ms": (time.perf_counter() - t0) * 1000} | translated
    similarities = [p.similarity for p in passages if p.similarity is not None]
    row["top_similarity"] = max(similarities) if similarities else None
    relevances = [p.rerank_score for p in passages if p.rerank_score is not None]
    row["top_rerank"] = max(relevances) if relevances else None
    if question.answerable:
        ranked = [p.chunk_id for p in passages]
        row["gold_chunks"] = len(gold)
        row["rank"] = m.first_relevant_rank(ranked, gold)
        for k in KS:
            row[f"recall@{k}"] = m.recall_at(ranked, gold, k)
        row["mrr"] = m.reciprocal_rank(ranked, gold)
        row["ndcg@10"] = m.ndcg_at(ranked, gold, 10)
    return row


_MARKER = re.compile(r"\s*\[\d+\]")
# Answers that talk about the passages instead of answering ("The passage [2] states that...").
_ABOUT_PASSAGES = re.compile(r"\b(passages?|extraits?|the (?:text|document)s? (?:says?|states?))\b", re.I)


def answer_row(answer: Answer, question: Question, gold: set[str]) -> dict[str, Any]:
    """Scores of one answer: correctness, citations, abstention, cost."""
    language = detect_language(question.question)
    text = _MARKER.sub("", answer.text)
    cited = answer.cited_sources
    cited_gold = [s for s in cited if s.passage.chunk_id in gold]
    row: dict[str, Any] = {
        "answer": answer.text,
        "declined": not answer.found,
        "answer_language": detect_language(text) if answer.found else answer.language,
        "question_language": language,
        "cited": [s.number for s in cited],
        "invalid_markers": answer.invalid_citations,
        "unsupported": len(answer.unsupported_citations),
        "first_token_ms": answer.timings.first_token_ms,
        "tokens_per_s": answer.timings.tokens_per_s or None,
        "prompt_tokens": answer.timings.prompt_tokens,
        "answerability": answer.answerability,
        "answer_start_ms": answer.timings.answer_start_ms,
        "quote_pieces": answer.timings.quote_pieces if answer.quote is not None else None,
    }
    if answer.found:
        row |= {
            "no_words": float(not re.search(r"\w", text)),
            "about_passages": float(bool(_ABOUT_PASSAGES.search(text))),
            "warned": float(bool(answer.warnings)),
            "quote_verbatim": float(answer.quote.verbatim) if answer.quote is not None else None,
        }
    if question.answerable and answer.found:
        refs = question.answers
        row |= {
            "em": m.exact_match(text, refs, language),
            "f1": m.token_f1(text, refs, language),
            "rouge_l": m.rouge_l(text, refs, language),
            "contains": m.contains_reference(text, refs, language),
            "numeric": m.numeric_match(text, refs),
            "has_citation": float(bool(cited)),
            "valid_citation": float(any(s.supported for s in cited_gold)),
            "citation_precision": len(cited_gold) / len(cited) if cited else None,
            "gold_in_context": float(any(s.passage.chunk_id in gold for s in answer.sources)),
            # the quote the answer rests on holds a reference answer (quoted style)
            "quote_has_answer": m.contains_reference(answer.quote.text, refs, language) if answer.quote else None,
        }
    return row


@dataclass
class RunResult:
    rows: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)


def evaluate(
    settings: Settings,
    store: Store,
    retriever: Retriever,
    questions: Sequence[Question],
    answerer: Answerer | None = None,
    progress: Callable[[int], None] | None = None,
    translator: ChatModel | None = None,
) -> RunResult:
    """Score every question; answers only when an answerer is given (retrieval-only otherwise). Retrieval
    only, with a ``translator`` model: each question is also searched in the store's other languages, as
    the answerer searches it (``rag.answering.crosslingual``)."""
    gold_index = GoldChunks(store)
    result = RunResult()
    for question in questions:
        gold = gold_index.of(question)
        row: dict[str, Any] = {"id": question.id, "question": question.question, "answerable": question.answerable}
        row |= retrieval_row(retriever, question, gold, _translated(translator, store, question.question, settings))
        if answerer is not None:
            t0 = time.perf_counter()
            try:
                row |= answer_row(answerer.answer(question.question), question, gold)
            except Exception as exc:  # one failed answer (a crashed model, a bug) is a row, not the run's end
                row["error"] = f"{type(exc).__name__}: {exc}"
            row["total_s"] = time.perf_counter() - t0
        result.rows.append(row)
        if progress:
            progress(1)
    points = operating_points(settings, getattr(retriever, "reranker", None))
    result.summary = summarize(result.rows, settings, answered=answerer is not None, points=points)
    result.summary["corpus"] = {"documents": gold_index.documents, "chunks": gold_index.chunks}
    return result


def _avg(rows: Sequence[dict[str, Any]], key: str) -> float | None:
    value = m.mean([r.get(key) for r in rows])
    return None if value is None else round(value, 3)


def _translation_summary(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """How many questions were translated, and the time it took (p50 / p95), when they were."""
    timed = [r["translate_ms"] for r in rows if "translate_ms" in r]
    if not timed:
        return {}
    translated = sum(1 for r in rows if r.get("translations"))
    return {"translation": {"translated": translated, "p50_ms": _round(m.percentile(timed, 50)),
                            "p95_ms": _round(m.percentile(timed, 95))}}  # fmt: skip


def summarize(
    rows: Sequence[dict[str, Any]], settings: Settings, answered: bool, points: OperatingPoints
) -> dict[str, Any]:
    """The run's figures, and the settings it ran with (``points``: the cuts in force, the settings' or the
    reranker's own)."""
    answerable = [r for r in rows if r["answerable"]]
    unanswerable = [r for r in rows if not r["answerable"]]
    latencies = [r["retrieval_ms"] for r in rows]
    summary: dict[str, Any] = {
        "questions": len(rows),
        "answerable": len(answerable),
        "unanswerable": len(unanswerable),
        "retrieval": {
            **{f"recall@{k}": _avg(answerable, f"recall@{k}") for k in KS},
            "mrr": _avg(answerable, "mrr"),
            "ndcg@10": _avg(answerable, "ndcg@10"),
            "no_gold_chunk": _avg([{"v": float(r["gold_chunks"] == 0)} for r in answerable], "v"),
            "p50_ms": _round(m.percentile(latencies, 50)),
            "p95_ms": _round(m.percentile(latencies, 95)),
        },
        **_translation_summary(rows),
        "threshold_sweep": threshold_sweep(answerable, unanswerable),
        "rerank_sweep": threshold_sweep(answerable, unanswerable, "top_rerank", RERANK_THRESHOLDS),
        "settings": {
            "chunk_tokens": settings.chunking.chunk_tokens,
            "overlap_tokens": settings.chunking.overlap_tokens,
            "k": settings.retrieval.k,
            "vector": settings.retrieval.vector,
            "keyword": settings.retrieval.keyword,
            "reranker": settings.retrieval.reranker,
            "candidates_for_rerank": settings.retrieval.candidates_for_rerank,
            "min_rerank_score": points.min_relevance,  # the cut in force (the setting, else the reranker's own)
            "min_passage_relevance": points.min_passage_relevance,
            "min_similarity": similarity_floor(settings),
            "embedding": runtime_label(settings),
        },
        "peak_rss_mb": round(_peak_rss_mb()),
    }
    if answered:
        failed = [r for r in rows if "error" in r]
        summary["errors"] = {"questions": len(failed), "first": [f"{r['id']}: {r['error']}" for r in failed[:5]]}
        rows = [r for r in rows if "error" not in r]  # the answer scores are over the questions answered
        answerable = [r for r in rows if r["answerable"]]
        unanswerable = [r for r in rows if not r["answerable"]]
        found = [r for r in answerable if not r["declined"]]
        summary["answers"] = {
            key: _avg(found, key) for key in ("em", "f1", "rouge_l", "contains", "numeric", "gold_in_context")
        }
        summary["citations"] = {
            "has_citation": _avg(found, "has_citation"),
            "valid_citation": _avg(found, "valid_citation"),
            "citation_precision": _avg(found, "citation_precision"),
            "invalid_markers": sum(r["invalid_markers"] for r in rows),
            "unsupported": sum(r["unsupported"] for r in rows),
        }
        answered_rows = [r for r in rows if not r["declined"]]
        summary["faithfulness"] = {
            "no_words": sum(r["no_words"] for r in answered_rows),
            "about_passages": sum(r["about_passages"] for r in answered_rows),
            "quote_verbatim": _avg([r for r in answered_rows if r["quote_verbatim"] is not None], "quote_verbatim"),
            "quote_has_answer": _avg([r for r in found if r.get("quote_has_answer") is not None], "quote_has_answer"),
            "warned_when_right": _avg([r for r in found if r.get("contains") == 1.0], "warned"),
            "warned_when_wrong": _avg([r for r in found if r.get("contains") == 0.0], "warned"),
        }
        summary["abstention"] = {
            "unanswerable_declined": _avg([{"v": float(r["declined"])} for r in unanswerable], "v"),
            "answerable_declined": _avg([{"v": float(r["declined"])} for r in answerable], "v"),
        }
        summary["language"] = {
            "answer_in_question_language": _avg(
                [{"v": float(r["answer_language"] == r["question_language"])} for r in rows if not r["declined"]], "v"
            )
        }
        summary["answerability_sweep"] = answerability_sweep(answerable, unanswerable)
        summary["cost"] = {
            "first_token_ms_p50": _round(m.percentile([r["first_token_ms"] for r in rows if r["first_token_ms"]], 50)),
            "answer_start_ms_p50": _round(
                m.percentile([r["answer_start_ms"] for r in rows if r["answer_start_ms"]], 50)
            ),
            "quote_tokens": _avg([r for r in rows if r["quote_pieces"] is not None], "quote_pieces"),
            "tokens_per_s": _avg(rows, "tokens_per_s"),
            "seconds_per_question": _avg(rows, "total_s"),
            "prompt_tokens": _avg(rows, "prompt_tokens"),
        }
    return summary


def threshold_sweep(
    answerable: Sequence[dict[str, Any]],
    unanswerable: Sequence[dict[str, Any]],
    key: str = "top_similarity",
    thresholds: Sequence[float] = THRESHOLDS,
) -> list[dict]:
    """For each threshold on the best passage's ``key`` (vector similarity, or the reranker's relevance): how
    many unanswerable questions it would decline before the model, and how many answerable ones it would
    wrongly decline (the calibration of retrieval.min_similarity and retrieval.min_rerank_score)."""

    def declined(rows: Sequence[dict[str, Any]], t: float) -> float | None:
        values = [r[key] for r in rows if r.get(key) is not None]
        return round(sum(v < t for v in values) / len(values), 3) if values else None

    return [
        {
            "threshold": t,
            "unanswerable_declined": declined(unanswerable, t),
            "answerable_declined": declined(answerable, t),
        }
        for t in thresholds
    ]


def answerability_sweep(answerable: Sequence[dict[str, Any]], unanswerable: Sequence[dict[str, Any]]) -> list[dict]:
    """For each llm.min_answerability: the share of questions the model's yes/no check would decline
    (questions declined earlier by the similarity threshold have no score and are left out)."""

    def declined(rows: Sequence[dict[str, Any]], t: float) -> float | None:
        values = [r["answerability"] for r in rows if r.get("answerability") is not None]
        return round(sum(v < t for v in values) / len(values), 3) if values else None

    return [
        {
            "threshold": t,
            "unanswerable_declined": declined(unanswerable, t),
            "answerable_declined": declined(answerable, t),
        }
        for t in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    ]


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def store_dir_for(workdir: Path, settings: Settings) -> Path:
    """One store per chunking setup and embedding model, reused by later runs."""
    model = embedder_kind(settings).store_tag(settings)
    c = settings.chunking
    context = f"-context{c.context_tokens}" if c.context_tokens else ""
    return workdir / f"store-{model}-{c.chunk_tokens}-{c.overlap_tokens}{context}"
