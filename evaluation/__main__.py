"""python -m evaluation: measure retrieval and answers on a question set.

    python -m evaluation piaf --limit 200 --retrieval-only --modes rerank hybrid vector keyword
    python -m evaluation covid_qa --limit 30 --unanswerable 10
    python -m evaluation financebench --retrieval-only
    python -m evaluation my-questions.jsonl --corpus my-docs/

Known sets (piaf, covid_qa, financebench) are converted from ``--eval-dir`` into the work folder
(questions.jsonl + corpus/), with a seeded share of articles left out to make unanswerable questions.
The corpus is ingested by the product's own pipeline into a store of the work folder (reused by later
runs), the questions are asked through the product's own retriever and answerer, and a table is
printed and a JSON report written. Settings (chunking, retrieval, llm) come from the usual places:
``--config``, ``SOURCIER_*`` variables.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
KNOWN = {"piaf": "piaf/piaf-v1.0.json", "covid_qa": "covid_qa/200423_covidQA.json", "financebench": "financebench_dev"}
EXIT_OK, EXIT_ERROR = 0, 2


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m evaluation", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("set", help=f"one of {', '.join(KNOWN)}, or a questions .jsonl file (with --corpus)")
    ap.add_argument("--corpus", type=Path, help="folder of documents for a .jsonl question set")
    ap.add_argument("--eval-dir", type=Path, default=REPO.parent / "shared" / "eval", help="where the known sets are")
    ap.add_argument("--workdir", type=Path, default=REPO / "eval-runs", help="converted sets, stores and reports")
    ap.add_argument("--limit", type=int, help="seeded sample of answerable questions (default: all)")
    ap.add_argument("--unanswerable", type=int, help="seeded sample of unanswerable questions (default: all)")
    ap.add_argument(
        "--holdout", type=float, help="share of documents left out of the corpus (default 0.1; 0 for financebench)"
    )
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--retrieval-only", action="store_true", help="score retrieval only: no model, minutes not hours")
    ap.add_argument(
        "--modes", nargs="+", choices=["rerank", "hybrid", "vector", "keyword"], help="compare retrieval modes"
    )
    ap.add_argument(
        "--query-runtime",
        choices=["torch", "torch-bf16", "onnx", "onnx-int8"],
        help="embed the questions with this runtime, the corpus with the configured one (as the product searches "
        "a store its ingest workers embedded in bfloat16 with the float32 ONNX copy)",
    )
    ap.add_argument(
        "--translations",
        type=Path,
        help="JSONL of id + question: ask these questions of the set in another language instead (e.g. "
        "evaluation/crosslingual/covid_qa_fr.jsonl); the model translates them back when llm.translate_questions "
        "is on, also with --retrieval-only",
    )
    ap.add_argument("--out", type=Path, help="JSON report path (default: in the work folder)")
    ap.add_argument("--config", type=Path, help="a sourcier.toml")
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rag.errors import SourcierError

    try:
        return run(args)
    except SourcierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def prepare(args: argparse.Namespace) -> tuple[str, Path, Path]:
    """(name, questions.jsonl, corpus folder) for a known set or the user's own."""
    from evaluation.sets import QuestionSetError, convert_financebench, convert_squad

    if args.set in KNOWN:
        source = args.eval_dir / KNOWN[args.set]
        if not source.exists():
            raise QuestionSetError(f"{source}: the {args.set} set is not there (give --eval-dir)")
        out = args.workdir / args.set
        if args.set == "financebench":
            path = convert_financebench(source, out, holdout=args.holdout or 0.0, seed=args.seed)
        else:
            path = convert_squad(source, out, holdout=0.1 if args.holdout is None else args.holdout, seed=args.seed)
        return args.set, path, out / "corpus"
    path = Path(args.set)
    if args.corpus is None:
        raise QuestionSetError(f"{path}: give the folder of its documents with --corpus")
    return path.stem, path, args.corpus


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    from evaluation.runner import MODES, evaluate, sample_questions, store_dir_for
    from evaluation.sets import read_jsonl
    from rag.errors import SettingsError
    from rag.settings import load_settings

    console = Console(stderr=True)
    if args.modes and not args.retrieval_only:
        raise SettingsError("--modes compares retrieval only: add --retrieval-only")
    settings = load_settings(args.config)
    name, questions_path, corpus = prepare(args)
    questions = read_jsonl(questions_path)
    if args.translations:
        questions = translated_questions(questions, args.translations)
    else:
        questions = sample_questions(questions, args.limit, args.unanswerable, args.seed)
    settings.paths.store_dir = store_dir_for(args.workdir / name, settings)
    store = ingest_corpus(settings, corpus, console)

    from rag.models.embedding import load_embedder
    from rag.search.rerank import load_reranker
    from rag.search.retrieval import Retriever

    query_settings = settings
    if args.query_runtime:
        query_settings = settings.model_copy(deep=True)
        query_settings.embedding.runtime = args.query_runtime
    embedder = load_embedder(query_settings)
    reranker = load_reranker(settings)
    if reranker is None and "rerank" in (args.modes or []):
        reranker = load_reranker(_with_reranker(settings))
    answerer = translator = None
    if args.retrieval_only and args.translations and settings.llm.translate_questions:
        from rag.llm import load_llm

        with console.status("loading the model (it translates the questions)"):
            translator = load_llm(settings)
    if not args.retrieval_only:
        from rag.answering.answer import build_answerer

        with console.status("loading the model"):
            answerer = build_answerer(settings, retriever=Retriever(store, embedder, settings, reranker))
    results: dict[str, Any] = {}
    for mode in args.modes or ["configured"]:
        mode_settings, mode_reranker = settings, reranker
        if mode != "configured":
            vector, keyword, reranked = MODES[mode]
            retrieval = settings.retrieval.model_copy(
                update={"vector": vector, "keyword": keyword, "reranker": "ms-marco-minilm" if reranked else "none"}
            )
            mode_settings = settings.model_copy(update={"retrieval": retrieval})
            mode_reranker = reranker if reranked else None
        retriever = Retriever(store, embedder, mode_settings, mode_reranker)
        with _progress(console, f"{name} {mode}", len(questions)) as advance:
            results[mode] = evaluate(mode_settings, store, retriever, questions, answerer, advance, translator)
    report = {
        "set": name,
        "questions_file": str(questions_path),
        "seed": args.seed,
        "retrieval_only": args.retrieval_only,
        "results": {mode: {"summary": r.summary, "rows": r.rows} for mode, r in results.items()},
    }
    out = args.out or args.workdir / name / f"report-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, ensure_ascii=False, indent=1), encoding="utf-8")
    print_summary(name, {mode: r.summary for mode, r in results.items()})
    print(f"report: {out}")
    return EXIT_OK


def translated_questions(questions: list[Any], path: Path) -> list[Any]:
    """The set's answerable questions that ``path`` (JSONL: ``id``, ``question``) translates, asked as
    translated (the documents, answers and gold chunks stay the set's own)."""
    import dataclasses

    from evaluation.sets import QuestionSetError

    translated = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
                translated[str(row["id"])] = str(row["question"])
            except (ValueError, KeyError, TypeError) as exc:
                raise QuestionSetError(f"{path}:{n}: not a JSON object with id and question ({exc})") from exc
    return [dataclasses.replace(q, question=translated[q.id]) for q in questions if q.id in translated and q.answerable]


def asked_both_ways(questions: list[Any], path: Path) -> tuple[list[Any], list[str], list[str]]:
    """The set's questions that ``path`` translates (``translated_questions``), with their wording in the set's
    own language and in the other one, in the same order (for benchmarks that ask each both ways)."""
    other = translated_questions(questions, path)
    ids = {q.id for q in other}
    own = [q for q in questions if q.id in ids]
    return own, [q.question for q in own], [q.question for q in other]


def _with_reranker(settings: Any) -> Any:
    """The settings with the default reranker on (for --modes rerank when the configuration has none)."""
    return settings.model_copy(
        update={"retrieval": settings.retrieval.model_copy(update={"reranker": "ms-marco-minilm"})}
    )


def ingest_corpus(settings: Any, corpus: Path, console: Any) -> Any:
    from ingest.pipeline import build_ingestor
    from ingest.progress import RichProgress

    with RichProgress(console) as progress:
        ingestor = build_ingestor(settings, progress)
        report = ingestor.run([corpus])
    for failure in report.failed:
        console.print(f"[yellow]skipped[/] {failure}")
    return ingestor.store


class _progress:
    def __init__(self, console: Any, label: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=console
        )
        self._task = self._bar.add_task(label, total=total)

    def __enter__(self) -> Any:
        self._bar.start()
        return lambda n: self._bar.advance(self._task, n)

    def __exit__(self, *exc: object) -> None:
        self._bar.stop()


def print_summary(name: str, summaries: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{name}: evaluation")
    table.add_column("metric")
    for mode in summaries:
        table.add_column(mode, justify="right")
    first = next(iter(summaries.values()))
    for group in ("retrieval", "answers", "citations", "faithfulness", "abstention", "language", "cost", "errors"):
        for key in first.get(group, {}):
            values = [summaries[mode].get(group, {}).get(key) for mode in summaries]
            table.add_row(f"{group}.{key}", *("-" if v is None else str(v) for v in values))
    table.add_row(
        "questions (answerable/unanswerable)", *(f"{s['answerable']}/{s['unanswerable']}" for s in summaries.values())
    )
    table.add_row(
        "corpus (documents/chunks)",
        *(f"{s['corpus']['documents']}/{s['corpus']['chunks']}" for s in summaries.values()),
    )
    table.add_row("peak RSS MB", *(str(s["peak_rss_mb"]) for s in summaries.values()))
    console = Console()
    console.print(table)
    for key, title in (
        ("threshold_sweep", "similarity threshold: share declined before the model"),
        ("rerank_sweep", "rerank relevance threshold: share declined before the model"),
    ):
        rows = next(
            (s[key] for s in summaries.values() if any(r["answerable_declined"] is not None for r in s[key])), None
        )
        if rows is None:
            continue
        sweep = Table(title=title)
        for column in ("threshold", "unanswerable declined", "answerable declined"):
            sweep.add_column(column, justify="right")
        for row in rows:
            sweep.add_row(*("-" if v is None else str(v) for v in row.values()))
        console.print(sweep)


if __name__ == "__main__":
    sys.exit(main())
