"""Whole-document summaries (issue 33, part 2): what they cost and whether their citations hold.

    .venv/bin/python -m benchmarks.summary_bench                       # all three parts, about 25 minutes
    .venv/bin/python -m benchmarks.summary_bench --parts cost --pages 30

* ``cost``: the first ``--pages`` pages of a FinanceBench filing, ingested and summarised with the default model:
  seconds per page and in all; then the same document asked again (kept: instant), and one section's map prompt
  run by raw llama-cpp-python (same tokens, same grammar, greedy) against ours, as a ratio.
* ``financebench``: for ``--questions`` FinanceBench dev questions, the five pages around the page that holds
  the answer (a PDF of their own), summarised: the page check's figures, and whether the summary cites the
  answer's page and states its figure.
* ``french``: the ``--french`` longest PIAF articles (French Wikipedia, MIT), one paragraph a page of a PDF:
  the page check's figures, and how many of the document's pages the summary cites.
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import time
from pathlib import Path
from typing import Any

from devkit.pdfs import text_pdf

ROOT = Path(__file__).resolve().parents[1]
EVAL = ROOT.parent / "shared" / "eval"


def excerpt(pdf: Path, first: int, last: int, out: Path) -> Path:
    """Pages ``first``..``last`` (1-based, inclusive) of ``pdf`` as a PDF of their own."""
    from pypdf import PdfReader, PdfWriter

    reader, writer = PdfReader(pdf), PdfWriter()
    for n in range(first - 1, min(last, len(reader.pages))):
        writer.add_page(reader.pages[n])
    out.parent.mkdir(parents=True, exist_ok=True)
    with out.open("wb") as f:
        writer.write(f)
    return out


class Bench:
    def __init__(self, workdir: Path) -> None:
        from rag.llm import load_llm
        from rag.settings import load_settings

        self.workdir = workdir
        self.settings = load_settings()
        self.llm = load_llm(self.settings)

    def summarise(self, folder: Path, name: str, refresh: bool = True) -> tuple[Any, float]:
        """``folder`` ingested into its own store, then its document ``name`` summarised (timed)."""
        from ingest.pipeline import build_ingestor
        from rag.answering.summary import Summarizer, find_document, summary_cache
        from rag.search.retrieval import open_existing_store

        settings = self.settings.model_copy(deep=True)
        settings.paths.store_dir = folder.parent / f"{folder.name}-store"
        build_ingestor(settings).run([folder])
        store = open_existing_store(settings)
        summarizer = Summarizer(self.llm, store, summary_cache(settings.paths.store_dir))
        doc = find_document(store, name)
        start = time.perf_counter()
        summary = summarizer.summarize(doc, refresh=refresh)
        return summary, time.perf_counter() - start


def part_cost(bench: Bench, pages: int, filing: str) -> dict[str, Any]:
    folder = bench.workdir / "cost"
    pdf = excerpt(EVAL / "financebench_dev" / "pdfs" / f"{filing}.pdf", 1, pages, folder / f"{filing}-p1-{pages}.pdf")
    summary, seconds = bench.summarise(folder, pdf.name)
    again, again_s = bench.summarise(folder, pdf.name, refresh=False)
    raw, ours = raw_ratio(bench, summary)
    return {
        "document": pdf.name,
        "pages": summary.pages,
        "sections": summary.sections,
        "seconds": round(seconds, 1),
        "seconds_per_page": round(seconds / max(summary.pages, 1), 2),
        "asked_again_s": round(again_s, 2),
        "asked_again_cached": again.cached,
        "reused_sections": summary.reused_sections,  # kept from an earlier run: their map calls cost nothing
        "check": vars(summary.check),
        "pages_cited": len({n for p in summary.points for n in p.pages}),
        "points": [(p.text, p.pages) for p in summary.points],
        "one_section_raw_s": round(raw, 2),
        "one_section_ours_s": round(ours, 2),
        "ours_over_raw": round(ours / raw, 3) if raw else None,
    }


def raw_ratio(bench: Bench, summary: Any) -> tuple[float, float]:
    """The first section's map call: our Summarizer's prompt and grammar run by raw llama-cpp-python (the same
    tokens, greedy) and by ours (not kept: evaluated again), timed in the same run."""
    from llama_cpp import Llama, LlamaGrammar

    from rag.answering.summary import (
        MAP_ANSWER_TOKENS,
        MAP_POINTS,
        MAP_SYSTEM,
        SECTION_TOKENS,
        Summarizer,
        points_grammar,
        sections_of,
    )
    from rag.models.gguf import resolve_model_path
    from rag.text import LANGUAGE_NAMES

    pages = sorted(summary.page_texts.values(), key=lambda p: p.number)
    section = sections_of(pages, bench.llm.prompter.count_tokens, SECTION_TOKENS)[0]
    system = MAP_SYSTEM.format(points=MAP_POINTS, language=LANGUAGE_NAMES[summary.language])
    user = f"Document: {Path(summary.source).name}\n\n{section.prompt_text()}"
    grammar = points_grammar(section.pages, MAP_POINTS, many_pages=False)
    start = time.perf_counter()
    Summarizer(bench.llm, None, None)._generate(system, user, MAP_ANSWER_TOKENS, grammar, None)  # type: ignore[arg-type]
    ours = time.perf_counter() - start
    prompt = bench.llm.prompter.render([{"role": "system", "content": system}, {"role": "user", "content": user}])
    s = bench.settings.llm
    llama = Llama(model_path=str(resolve_model_path(bench.settings)), n_ctx=s.n_ctx, n_threads=s.n_threads,
                  n_threads_batch=s.n_threads_batch, verbose=False)  # fmt: skip
    start = time.perf_counter()
    for _ in llama.create_completion(prompt.tokens, max_tokens=MAP_ANSWER_TOKENS, temperature=0.0,
                                     repeat_penalty=1.0, grammar=LlamaGrammar.from_string(grammar, verbose=False),
                                     stream=True):  # fmt: skip
        pass
    raw = time.perf_counter() - start
    del llama
    return raw, ours


def part_financebench(bench: Bench, questions: int) -> dict[str, Any]:
    from rag.answering.citations import stated_numbers

    rows = [json.loads(line) for line in (EVAL / "financebench_dev" / "questions.jsonl").open()]
    rows = [r for r in rows if r["question_type"] != "metrics-generated"][:questions]  # figures read, not computed
    results = []
    for i, row in enumerate(rows):
        evidence = row["evidence"] if isinstance(row["evidence"], list) else ast.literal_eval(row["evidence"])
        page = int(evidence[0]["evidence_page_num"]) + 1  # 0-based in the set
        first = max(1, page - 2)
        folder = bench.workdir / "financebench" / f"q{i:02}"
        pdf = excerpt(EVAL / "financebench_dev" / "pdfs" / f"{row['doc_name']}.pdf", first, page + 2,
                      folder / f"{row['doc_name']}-p{first}.pdf")  # fmt: skip
        summary, seconds = bench.summarise(folder, pdf.name)
        answer_page = page - first + 1
        figures = {n for n in stated_numbers(str(row["answer"])) if len(n) >= 2}
        said = " ".join(p.text for p in summary.points)
        results.append({
            "document": pdf.name, "pages": summary.pages, "answer_page": answer_page, "seconds": round(seconds, 1),
            "reused_sections": summary.reused_sections, "check": vars(summary.check),
            "pages_cited": len({n for p in summary.points for n in p.pages}),
            "cites_answer_page": any(answer_page in p.pages for p in summary.points),
            "states_a_figure_of_the_answer": bool(figures & stated_numbers(said)) if figures else None,
        })  # fmt: skip
        print(json.dumps(results[-1]), flush=True)
    return {"documents": results, **_totals(results)}


def part_french(bench: Bench, articles: int) -> dict[str, Any]:
    data = json.loads((EVAL / "piaf" / "piaf-v1.0.json").read_text(encoding="utf-8"))["data"]
    longest = sorted(data, key=lambda a: -sum(len(p["context"]) for p in a["paragraphs"]))[:articles]
    results = []
    for article in longest:
        name = re.sub(r"\W+", "-", article["title"]).strip("-").lower()
        folder = bench.workdir / "french" / name
        folder.mkdir(parents=True, exist_ok=True)
        pages = [p["context"] for p in article["paragraphs"]]
        (folder / f"{name}.pdf").write_bytes(text_pdf(pages))
        summary, seconds = bench.summarise(folder, f"{name}.pdf")
        cited = {n for p in summary.points for n in p.pages}
        results.append({
            "document": f"{name}.pdf", "pages": summary.pages, "seconds": round(seconds, 1),
            "language": summary.language, "reused_sections": summary.reused_sections, "check": vars(summary.check),
            "pages_cited": len(cited),
            "points": [(p.text, p.pages) for p in summary.points],
        })  # fmt: skip
        print(json.dumps(results[-1], ensure_ascii=False), flush=True)
    return {"documents": results, **_totals(results)}


def _totals(results: list[dict[str, Any]]) -> dict[str, Any]:
    written = sum(r["check"]["written"] for r in results)
    pages = sum(r["pages"] for r in results)
    return {
        "points_written": written,
        "recited": sum(r["check"]["recited"] for r in results),
        "dropped": sum(r["check"]["dropped"] for r in results),
        "seconds_per_page_p50": round(statistics.median(r["seconds"] / max(r["pages"], 1) for r in results), 2),
        "pages": pages,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=ROOT / "eval-runs" / "summaries")
    ap.add_argument("--parts", nargs="+", choices=["cost", "financebench", "french"],
                    default=["cost", "financebench", "french"])  # fmt: skip
    ap.add_argument("--pages", type=int, default=30)
    ap.add_argument("--filing", default="ADOBE_2016_10K")
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--french", type=int, default=3)
    args = ap.parse_args()
    bench = Bench(args.workdir)
    results: dict[str, Any] = {}
    if "french" in args.parts:
        results["french"] = part_french(bench, args.french)
    if "financebench" in args.parts:
        results["financebench"] = part_financebench(bench, args.questions)
    if "cost" in args.parts:
        results["cost"] = part_cost(bench, args.pages, args.filing)
    print(json.dumps(results, indent=2, ensure_ascii=False))
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    main()
