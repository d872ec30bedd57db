"""Follow-up questions: is a follow-up ("and in Berlin?") found better searched as the previous question plus
the new one (the default before), alone, or rewritten into a standalone question by the model?

The set (``evaluation/sets/followups.jsonl``): 30 follow-ups over the sample documents, 17 in English and 13
in French, each with the earlier question and answer and the words the right passage holds. The store
holds the sample documents among distractors (the PIAF and COVID-QA evaluation corpora, when they have
been prepared by ``python -m evaluation piaf`` / ``covid_qa``), searched by the product's retriever
(hybrid + reranker, ``retrieval.k`` passages). For each way of searching: the share of follow-ups whose
right passage is among the passages the model would read (recall@k) and at rank 1, per language, and the
seconds the rewriting costs (the model's time, on this machine).

    .venv/bin/python -m evaluation.followups [--out eval-runs/followups.json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rag.answering.packing import Turn

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
SET = HERE / "sets" / "followups.jsonl"
MODES = ("concatenated", "alone", "rewritten")


def load_set(path: Path = SET) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def build_store(workdir: Path) -> Path:
    """The sample documents among the evaluation corpora's chunks (copied from their prepared stores)."""
    from rag.settings import PathSettings, Settings

    store = workdir / "followups-store"
    if not store.exists():
        prepared = sorted((REPO / "eval-runs" / "piaf").glob("store-default-128-19-context32"))
        if prepared:
            shutil.copytree(prepared[0], store)
        from ingest.pipeline import ingest_paths

        targets = [REPO / "data"] + [p for p in [REPO / "eval-runs" / "covid_qa" / "corpus"] if p.exists()]
        ingest_paths(targets, Settings(paths=PathSettings(store_dir=store)))
    return store


def found(passages: list[Any], evidence: dict[str, str]) -> int | None:
    """Rank (from 0) of the first passage of the right document holding the evidence's words."""
    for rank, p in enumerate(passages):
        if Path(p.source).name == evidence["document"] and evidence["text"] in p.text:
            return rank
    return None


def run(out: Path | None) -> dict[str, Any]:
    from rag.answering.answer import detect_language
    from rag.answering.followup import concatenated_query, standalone_question
    from rag.llm import load_llm
    from rag.search.retrieval import build_retriever
    from rag.settings import PathSettings, Settings

    workdir = REPO / "eval-runs"
    settings = Settings(paths=PathSettings(store_dir=build_store(workdir)))
    retriever = build_retriever(settings)
    llm = load_llm(settings)
    k = settings.retrieval.k
    rows = []
    for item in load_set():
        history = [Turn(t["question"], t["answer"]) for t in item["history"]]
        question, evidence = item["question"], item["evidence"][0]
        language = detect_language(question)
        t0 = time.perf_counter()
        rewritten = standalone_question(llm, history, question, settings.llm, language=language)
        rewrite_s = time.perf_counter() - t0
        queries = {"concatenated": concatenated_query(history, question), "alone": question, "rewritten": rewritten}
        ranks = {mode: found(retriever.search(q, k), evidence) for mode, q in queries.items()}
        rows.append(
            {
                "question": question,
                "language": detect_language(history[-1].question + " " + question),
                "used_rewrite": rewritten != concatenated_query(history, question),
                "rewritten": rewritten,
                "rewrite_s": round(rewrite_s, 2),
                "ranks": ranks,
            }
        )
        print(f"{ranks} {question!r} -> {rewritten!r} ({rewrite_s:.1f} s)", file=sys.stderr)
    report = {"k": k, "questions": len(rows), "summary": summarize(rows, k), "rows": rows}
    print_table(report)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
        print(f"report: {out}")
    return report


def summarize(rows: list[dict[str, Any]], k: int) -> dict[str, Any]:
    summary: dict[str, Any] = {}
    for language in ("all", "en", "fr"):
        chosen = [r for r in rows if language in ("all", r["language"])]
        if not chosen:
            continue
        summary[language] = {
            "questions": len(chosen),
            **{
                mode: {
                    f"recall@{k}": round(sum(_within(r["ranks"][mode], k) for r in chosen) / len(chosen), 3),
                    "recall@1": round(sum(r["ranks"][mode] == 0 for r in chosen) / len(chosen), 3),
                }
                for mode in MODES
            },
        }
    seconds = [r["rewrite_s"] for r in rows]
    summary["rewrite_seconds"] = {"median": round(statistics.median(seconds), 2), "max": round(max(seconds), 2)}
    return summary


def _within(rank: int | None, k: int) -> bool:
    return rank is not None and rank < k


def print_table(report: dict[str, Any]) -> None:
    k, summary = report["k"], report["summary"]
    print(f"\nFollow-ups: right passage among the {k} the model reads (recall@{k}) / at rank 1")
    languages = [lang for lang in ("all", "en", "fr") if lang in summary]
    header = "".join(f"{lang} ({summary[lang]['questions']})".rjust(18) for lang in languages)
    print(f"{'searched as':14s}{header}")
    for mode in MODES:
        cells = []
        for lang in languages:
            cell = summary[lang][mode]
            cells.append(f"{cell[f'recall@{k}']:.3f} / {cell['recall@1']:.2f}".rjust(18))
        print(f"{mode:14s}{''.join(cells)}")
    s = summary["rewrite_seconds"]
    print(f"rewriting: median {s['median']} s, max {s['max']} s per follow-up")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "eval-runs" / "followups.json")
    run(parser.parse_args(argv).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
