"""The one JSON shape of an answer, both ways.

``sourcier ask --json`` prints it, the API's chat completion carries it under its OpenAI fields (its last
streamed chunk too), a saved conversation's turns are given in it, and ``sourcier ask`` through a running server
reads it back (:func:`answer_from_json`). A saved conversation is kept as the :class:`~rag.answering.answer.Answer`
record itself (``rag.answering.conversations``): a storage format, not an output.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from rag.answering.answer import Answer, Source, Timings
from rag.answering.citations import Citation
from rag.answering.packing import Passage
from rag.answering.quotes import Mismatch, Quote

PageUrl = Callable[[Passage], "str | None"]


def source_json(source: Source, page_url: PageUrl | None = None) -> dict[str, Any]:
    """One passage given to the model: its number, where it is, its text and scores, whether it was cited
    (and backed); ``page_url`` adds where its page's image is (the API's)."""
    p = source.passage
    return {
        "number": source.number,
        "chunk_id": p.chunk_id,
        "page_url": page_url(p) if page_url is not None else None,
        "file": p.source,
        "root": p.root,
        "page": p.page or None,
        "start": p.start,
        "end": p.end,
        "text": p.text,
        "score": p.score,
        "similarity": p.similarity,
        "relevance": p.rerank_score,
        "cited": source.cited,
        "supported": source.supported,
    }


def quote_json(answer: Answer) -> dict[str, Any] | None:
    """The sentence the answer rests on (quoted style): its passage's number, its text, where it lies in
    the passage (``start``/``end``, null when it is not in it) and whether it was found there word for word."""
    q = answer.quote
    if q is None:
        return None
    return {"number": q.number, "text": q.text, "start": q.start, "end": q.end, "verbatim": q.verbatim}


def timings_json(t: Timings) -> dict[str, Any]:
    def ms(value: float | None) -> float | None:
        return round(value, 1) if value is not None else None

    return {
        "queue_ms": ms(t.queue_ms),
        "retrieval_ms": ms(t.retrieval_ms),
        "translate_ms": ms(t.translate_ms),
        "check_ms": ms(t.check_ms),
        "first_token_ms": ms(t.first_token_ms),
        "answer_start_ms": ms(t.answer_start_ms),
        "generation_s": round(t.generation_s, 3),
        "tokens_per_s": round(t.tokens_per_s, 2),
        "prompt_tokens": t.prompt_tokens,
        "cached_tokens": t.cached_tokens,
        "answer_pieces": t.answer_pieces,
        "quote_pieces": t.quote_pieces,
    }


def answer_json(answer: Answer, page_url: PageUrl | None = None) -> dict[str, Any]:
    """The answer as JSON: the question, its text (and as shown: the quote above it), whether the documents
    held it, the passages given to the model (``cited``: the numbers its markers cite), the checks, what was
    searched and how long each step took."""
    return {
        "question": answer.question,
        "text": answer.text,
        "display_text": answer.display_text,
        "found": answer.found,
        "language": answer.language,
        "cited": [s.number for s in answer.cited_sources],
        "sources": [source_json(s, page_url) for s in answer.sources],
        "quote": quote_json(answer),
        "citations": [dataclasses.asdict(c) for c in answer.citations],
        "invalid_citations": answer.invalid_citations,
        "dropped_passages": answer.dropped_passages,
        "answerability": answer.answerability,
        "warnings": [{"kind": w.kind, "value": w.value, "text": str(w)} for w in answer.warnings],
        "search_query": answer.search_query,
        "translations": answer.translations,
        "route": answer.route,
        "summary": answer.summary,
        "cancelled": answer.cancelled,
        "timings": timings_json(answer.timings),
    }


def answer_from_json(data: dict[str, Any], question: str | None = None) -> Answer:
    """The :class:`Answer` that :func:`answer_json` wrote (``question`` when the JSON does not carry it)."""
    sources = [
        Source(
            s["number"],
            Passage(
                chunk_id=s["chunk_id"],
                text=s["text"],
                source=s["file"],
                page=s["page"] or 0,
                start=s["start"],
                end=s["end"],
                score=s["score"],
                root=s["root"],
                similarity=s["similarity"],
                rerank_score=s["relevance"],
            ),
            s["cited"],
            s["supported"],
        )
        for s in data["sources"]
    ]
    q = data.get("quote")
    known = Timings.__dataclass_fields__
    return Answer(
        question=data.get("question") or question or "",
        text=data["text"],
        language=data["language"],
        found=data["found"],
        sources=sources,
        citations=[Citation(**c) for c in data.get("citations", [])],
        invalid_citations=data["invalid_citations"],
        dropped_passages=data.get("dropped_passages", 0),
        answerability=data["answerability"],
        timings=Timings(**{k: v for k, v in data["timings"].items() if k in known}),
        cancelled=data.get("cancelled", False),
        quote=Quote(q["number"], q["text"], q["start"], q["end"]) if q else None,
        warnings=[Mismatch(w["kind"], w["value"]) for w in data["warnings"]],
        search_query=data.get("search_query"),
        translations=data.get("translations") or {},
        route=data.get("route"),
        summary=data.get("summary"),
    )
