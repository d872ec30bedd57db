"""Which prompt wording makes the default model answer right, cite right and decline right?

Runs the evaluation (``evaluation.runner.evaluate``, the product's own retriever and answerer with the
real default GGUF) on seeded samples of PIAF (French) and COVID-QA (English), answerable questions and
questions whose article was left out of the corpus, once per prompt variant, and prints one table.
The stores are the evaluation command's own (``python -m evaluation piaf --retrieval-only`` builds them).

    .venv/bin/python benchmarks/prompt_sweep.py --answerable 12 --unanswerable 6 --variants current reminder
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import rag.answering.answer as answer_module  # noqa: E402

REMINDER = (
    "Passages:\n{passages}\n\nQuestion: {question}\n\n"
    "Answer from the passages above only, citing them like [1]. "
    "If they do not contain the answer, reply only with the refusal sentence."
)
TERSE_SYSTEM = (
    "Answer the user's question from the numbered passages only. Write a short answer in {language} and put the "
    "number of the passage that states each fact in square brackets after it, like [2]. "
    "If no passage states the answer, reply exactly: {not_found}"
)
VARIANTS = {
    "current": (answer_module.SYSTEM_PROMPT, answer_module.USER_TEMPLATE),
    "reminder": (answer_module.SYSTEM_PROMPT, REMINDER),
    "terse": (TERSE_SYSTEM, answer_module.USER_TEMPLATE),
    "terse-reminder": (TERSE_SYSTEM, REMINDER),
}
COLUMNS = [
    ("answers", "contains"),
    ("answers", "f1"),
    ("citations", "has_citation"),
    ("citations", "valid_citation"),
    ("citations", "citation_precision"),
    ("abstention", "unanswerable_declined"),
    ("abstention", "answerable_declined"),
    ("language", "answer_in_question_language"),
    ("cost", "seconds_per_question"),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["piaf", "covid_qa"])
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    ap.add_argument("--answerable", type=int, default=12)
    ap.add_argument("--unanswerable", type=int, default=6)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--workdir", type=Path, default=Path(__file__).resolve().parent.parent / "eval-runs")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()

    from evaluation.runner import evaluate, sample_questions, store_dir_for
    from evaluation.sets import read_jsonl
    from rag.answering.answer import Answerer
    from rag.llm import load_llm
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.retrieval import Retriever
    from rag.search.store import open_store
    from rag.settings import load_settings

    settings = load_settings()
    llm = load_llm(settings)
    embedder = load_embedder(settings)
    results = {}
    for name in args.sets:
        set_settings = settings.model_copy(deep=True)
        set_settings.paths.store_dir = store_dir_for(args.workdir / name, settings)
        store = open_store(set_settings, embedding_model_info(set_settings), create=False)
        questions = read_jsonl(args.workdir / name / "questions.jsonl")
        sample = sample_questions(questions, args.answerable, args.unanswerable, args.seed)
        retriever = Retriever(store, embedder, set_settings)
        for variant in args.variants:
            system, user = VARIANTS[variant]
            set_settings.llm.system_prompt = system
            answer_module.USER_TEMPLATE = user
            t0 = time.perf_counter()
            result = evaluate(set_settings, store, retriever, sample, Answerer(set_settings, retriever, llm))
            results[(name, variant)] = result
            row = {"set": name, "variant": variant, "minutes": round((time.perf_counter() - t0) / 60, 1)}
            row |= {key: result.summary[group][key] for group, key in COLUMNS}
            print(json.dumps(row), flush=True)
    print("\n| set | variant | " + " | ".join(k for _, k in COLUMNS) + " |")
    print("|---|---|" + "---|" * len(COLUMNS))
    for (name, variant), result in results.items():
        values = [result.summary[group][key] for group, key in COLUMNS]
        print(f"| {name} | {variant} | " + " | ".join("-" if v is None else str(v) for v in values) + " |")
    out = args.out or args.workdir / f"prompt-sweep-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(
        json.dumps({f"{n}/{v}": {"summary": r.summary, "rows": r.rows} for (n, v), r in results.items()}, indent=1),
        encoding="utf-8",
    )
    print(f"report: {out}")


if __name__ == "__main__":
    main()
