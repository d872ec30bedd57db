"""How far can the answer side go? The ceilings the retrieval sets on valid citations and on declining.

A citation is valid when it names a gold passage (and its quote is in it): no answer can do better than the
share of questions whose gold passage is among the ``retrieval.k`` passages given to the model. Within them,
the quote must be picked; this measures how well cheap signals pick it, with no model at all:

- ``passage@1``: the reranker's best passage is gold (what "always quote passage [1]" would reach);
- ``sentence@1``: the cross-encoder's best sentence among all the passages' sentences (header included)
  is in a gold passage, and ``sentence_holds_answer``: it also holds a reference answer;
- the decline operating point: with the best passage's rerank score as the only signal, the share of
  unanswerable questions declined when 10% of answerable ones are (the issue's target is 80% at 10%).

Runs on a set's evaluation store (build it first with ``python -m evaluation SET --retrieval-only``)::

    .venv/bin/python benchmarks/citation_ceiling.py piaf --limit 300 --unanswerable 100
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def sentences(text: str) -> list[str]:
    """The passage's sentences as a quote would hold them (runs of clauses up to a sentence's end)."""
    from rag.answering.quotes import SENTENCE_END, clause_spans, quotable

    out, current = [], ""
    for clause in (c for c in (quotable(text[a:b]) for a, b in clause_spans(text)) if c):
        current = f"{current} {clause}".strip()
        if SENTENCE_END.search(current):
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return [s for s in out if len(s) >= 8]


def _folded(text: str) -> str:
    from rag.text import fold

    return " ".join(re.sub(r"[^\w]+", " ", fold(text.lower())).split())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("set", help="an evaluation set already converted under eval-runs/ (piaf, covid_qa, ...)")
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--unanswerable", type=int, default=100)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--workdir", type=Path, default=ROOT / "eval-runs")
    args = ap.parse_args()

    from evaluation.runner import GoldChunks, sample_questions, store_dir_for
    from evaluation.sets import read_jsonl
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.rerank import load_reranker
    from rag.search.retrieval import Retriever
    from rag.search.store import open_store
    from rag.settings import load_settings
    from rag.text import search_text

    settings = load_settings(None)
    settings.paths.store_dir = store_dir_for(args.workdir / args.set, settings)
    info = embedding_model_info(settings)
    store = open_store(settings, info)
    reranker = load_reranker(settings)
    if reranker is None:
        sys.exit("retrieval.reranker is off: these ceilings are about the reranked passages")
    retriever = Retriever(store, load_embedder(settings, info), settings, reranker)
    questions = sample_questions(
        read_jsonl(args.workdir / args.set / "questions.jsonl"), args.limit, args.unanswerable, args.seed
    )
    gold_of = GoldChunks(store)
    k = settings.retrieval.k
    answerable: list[dict[str, float]] = []
    unanswerable: list[float] = []
    scoring_ms: list[float] = []
    for q in questions:
        gold = gold_of.of(q)
        passages = retriever.search(q.question, k)
        top = max((p.rerank_score or 0.0 for p in passages), default=0.0)
        if not q.answerable:
            unanswerable.append(top)
            continue
        pairs = [(p, s) for p in passages for s in sentences(p.text)]
        t0 = time.perf_counter()
        scores = reranker.score(q.question, [search_text(s, p.context) for p, s in pairs]) if pairs else []
        scoring_ms.append((time.perf_counter() - t0) * 1000)
        refs = [_folded(a) for a in q.answers if a.strip()]
        best = max(range(len(pairs)), key=scores.__getitem__) if pairs else None
        in_gold = best is not None and pairs[best][0].chunk_id in gold
        answerable.append(
            {
                "top": top,
                "gold_in_context": float(any(p.chunk_id in gold for p in passages)),
                "passage@1": float(bool(passages) and passages[0].chunk_id in gold),
                "sentence@1": float(in_gold),
                "sentence_holds_answer": float(in_gold and any(r in _folded(pairs[best][1]) for r in refs)),
            }
        )

    def mean(key: str) -> float:
        return sum(r[key] for r in answerable) / len(answerable)

    print(f"{args.set}: {len(answerable)} answerable, {len(unanswerable)} unanswerable, k={k}")
    for key in ("gold_in_context", "passage@1", "sentence@1", "sentence_holds_answer"):
        print(f"  {key:24s} {mean(key):.3f}")
    tops = sorted(r["top"] for r in answerable)
    auc = sum((a > u) + 0.5 * (a == u) for a in tops for u in unanswerable) / (len(tops) * len(unanswerable))
    print(f"  rerank score AUC (answerable vs not) {auc:.3f}")
    for share in (0.05, 0.10, 0.20):
        t = tops[int(share * len(tops))]
        declined = sum(u < t for u in unanswerable) / len(unanswerable)
        print(f"  threshold {t:.4f}: {share:.0%} of answerable declined, {declined:.0%} of unanswerable declined")
    print(f"  sentence scoring p50 {sorted(scoring_ms)[len(scoring_ms) // 2]:.0f} ms per question")


if __name__ == "__main__":
    main()
