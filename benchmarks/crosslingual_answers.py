"""Answers to questions asked in the other language (issue 37), through the product's own Answerer with the
default model and settings: which document they cite, and in which language they are written.

Questions: the six sample questions asked in the other language (``evaluation/crosslingual/samples.jsonl``,
over the sample documents in a fresh store), then ``--covid N`` French questions over the English COVID-QA
papers and ``--piaf N`` English questions over the French PIAF articles (the stores of ``python -m evaluation``,
seed 13). For each: the document cited first (samples: is it the expected one?), the short answer, the
language it is detected in, and the translation searched. Judge "written wholly in the question's language"
by reading the rows (``--out`` keeps them); the detected language is a first check only.

    .venv/bin/python benchmarks/crosslingual_answers.py --covid 10 --piaf 4 --out eval-runs/crosslingual-answers.json
    SOURCIER_LLM__TRANSLATE_QUESTIONS=false .venv/bin/python benchmarks/crosslingual_answers.py   # without
    SOURCIER_LLM__ASIDE_N_CTX=0 .venv/bin/python benchmarks/crosslingual_answers.py   # in the answers' context
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
CROSSLINGUAL = ROOT / "evaluation" / "crosslingual"


def ask(answerer: Any, question: str, expected: str | None = None) -> dict[str, Any]:
    from rag.text import detect_language

    t0 = time.perf_counter()
    answer = answerer.answer(question)
    cited = [s.passage.source for s in answer.cited_sources]
    row = {
        "question": question,
        "found": answer.found,
        "cited": cited,
        "translations": answer.translations,
        "quote": answer.quote.text if answer.quote else None,
        "answer": answer.text,
        "question_language": answer.language,
        "answer_language": detect_language(answer.text),
        "translate_ms": round(answer.timings.translate_ms or 0),
        "first_word_ms": round(answer.timings.answer_start_ms or answer.timings.first_token_ms or 0),
        "cached_tokens": answer.timings.cached_tokens,
        "total_s": round(time.perf_counter() - t0, 1),
    }
    if expected is not None:
        row["expected"] = expected
        row["right_document"] = bool(cited) and cited[0] == expected
    print(json.dumps(row, ensure_ascii=False), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--covid", type=int, default=10)
    ap.add_argument("--piaf", type=int, default=4)
    ap.add_argument("--workdir", type=Path, default=ROOT / "eval-runs")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    from evaluation.__main__ import translated_questions
    from evaluation.runner import store_dir_for
    from evaluation.sets import read_jsonl
    from ingest.pipeline import build_ingestor
    from rag.answering.answer import Answerer
    from rag.llm import load_llm
    from rag.search.retrieval import build_retriever
    from rag.settings import load_settings

    settings = load_settings()
    llm = load_llm(settings)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        samples = settings.model_copy(deep=True)
        samples.paths.store_dir = Path(tmp) / "store"
        build_ingestor(samples).run([ROOT / "data"])
        answerer = Answerer(samples, build_retriever(samples), llm)
        for line in (CROSSLINGUAL / "samples.jsonl").read_text(encoding="utf-8").splitlines():
            case = json.loads(line)
            rows.append({"set": "samples"} | ask(answerer, case["question"], case["document"]))
    for name, count, path in (
        ("covid_qa", args.covid, CROSSLINGUAL / "covid_qa_fr.jsonl"),
        ("piaf", args.piaf, CROSSLINGUAL / "piaf_en.jsonl"),
    ):
        if not count:
            continue
        s = settings.model_copy(deep=True)
        s.paths.store_dir = store_dir_for(args.workdir / name, settings)
        answerer = Answerer(s, build_retriever(s), llm)
        for q in translated_questions(read_jsonl(args.workdir / name / "questions.jsonl"), path)[:count]:
            row = ask(answerer, q.question)
            rows.append({"set": name, "reference": q.answers[:1]} | row)
    samples_rows = [r for r in rows if r["set"] == "samples"]

    def p50(key: str) -> int:  # the upper of the two middle rows
        return sorted(r[key] or 0 for r in rows)[len(rows) // 2]

    answered = [r for r in rows if r["found"]]
    summary = {
        "questions": len(rows),
        "samples_right_document": sum(r["right_document"] for r in samples_rows),
        "answered": len(answered),
        "answers_detected_in_question_language": sum(r["answer_language"] == r["question_language"] for r in answered),
        "translate_ms_p50": p50("translate_ms"),
        "first_word_ms_p50": p50("first_word_ms"),
        "cached_tokens_p50": p50("cached_tokens"),
    }
    print(json.dumps(summary))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"summary": summary, "rows": rows}, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
