"""Many similar documents (issue 35): the same document in several years, with its year strings and figures
changed, and questions that name the year. Does the search find the right year's passage, and does the answer
give and cite the right year's figure?

The corpus is made here, in a work folder, from documents of the repository and the dev sets:
- the sample bird survey (English; surveys of 2018, 2021 and 2024, each with its own species and skylark counts),
- the sample compost guide (French; editions of 2021, 2022 and 2023, each with its own temperature and bin size),
- the cover and evidence pages of three FinanceBench dev filings (Corning, PepsiCo and Verizon, FY2022), each
  copied as FY2021 and FY2020 with every year moved back and every amount of three digits or more scaled
  (0.91 and 0.83), as plain text files named like the originals (CORNING_2020_10K.txt).
The questions name the document and the year: two per sample year, and per filing year four lines of its
tables chosen with a fixed seed ("What was Corning's 'Total current assets' for fiscal 2021, in millions?").

For each question, with routing off (``retrieval.route_documents = false``) and on, in the same run: the rank
of the first passage of the right year's document that holds the expected figure (recall@1/@5), and the time
routing adds. With ``--answers N``: N questions answered by the default model, both ways: is the right figure in
the answer, and is the right year's document cited?

    .venv/bin/python benchmarks/similar_documents.py                   # retrieval (a few minutes: the ingest)
    .venv/bin/python benchmarks/similar_documents.py --answers 24       # and answers (about 10 s each, twice)
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FILINGS = ROOT.parent / "shared" / "eval" / "financebench_dev"
SCALES = {0: 1.0, 1: 0.91, 2: 0.83}  # years back -> factor for amounts
LETTERS = "abc"  # file names without their year: bird-survey-b.txt
_AMOUNT = re.compile(r"(?<![\d.])(\d{1,3}(?:,\d{3})+|\d{3,})(?![\d])")
_YEAR = re.compile(r"\b(19[89]\d|20[0-3]\d)\b")


def bird_survey(folder: Path, named: bool) -> list[dict[str, Any]]:
    base = (ROOT / "data" / "bird-survey-2024.txt").read_text(encoding="utf-8")
    years = {2024: (61, 54, 4, 9, 14), 2021: (54, 49, 9, 14, 17), 2018: (49, 44, 14, 17, 21)}
    questions = []
    for i, (year, (species, before, males, males_1, males_2)) in enumerate(years.items()):
        text = (
            base.replace("Survey 2024", f"Survey {year}")
            .replace("June 2024", f"June {year}")
            .replace("A total of 61 species were recorded, up from 54 in the 2021 survey", f"A total of {species} "
                     f"species were recorded, up from {before} in the {year - 3} survey")
            .replace("an average of 4 singing males per morning, against 9 in 2021 and 14 in 2018", f"an average of "
                     f"{males} singing males per morning, against {males_1} in {year - 3} and {males_2} in {year - 6}")
            .replace("Repeat the survey in 2027", f"Repeat the survey in {year + 3}")
        )  # fmt: skip
        name = f"bird-survey-{year if named else LETTERS[i]}.txt"
        (folder / name).write_text(text, encoding="utf-8")
        questions += [
            q(f"How many species were recorded in the {year} bird survey?", name, species),
            q(f"How many singing skylark males per morning did the {year} bird survey count?", name, males),
        ]
    return questions


def compost_guide(folder: Path, named: bool) -> list[dict[str, Any]]:
    base = (ROOT / "data" / "compost-guide.md").read_text(encoding="utf-8")
    years = {2023: (60, 40), 2022: (65, 35), 2021: (70, 30)}
    questions = []
    for i, (year, (degrees, litres)) in enumerate(years.items()):
        text = (
            base.replace("# Le compost domestique : guide pratique", f"# Le compost domestique : guide pratique, "
                         f"édition {year}")
            .replace("jusqu'à 60 °C", f"jusqu'à {degrees} °C")
            .replace("Un bac de 40 litres", f"Un bac de {litres} litres")
        )  # fmt: skip
        name = f"guide-compost-{year if named else LETTERS[i]}.md"
        (folder / name).write_text(text, encoding="utf-8")
        questions += [
            q(f"Selon le guide du compost de {year}, jusqu'à quelle température monte le cœur du tas ?", name,
              degrees),
            q(f"D'après le guide compost {year}, quel bac suffit pour un foyer de deux personnes ?", name, litres),
        ]  # fmt: skip
    return questions


def filing_copies(folder: Path, seed: int, per_year: int, named: bool) -> list[dict[str, Any]]:
    from pypdf import PdfReader

    evidence: dict[str, set[int]] = {}
    for line in (FILINGS / "questions.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["doc_name"] in ("CORNING_2022_10K", "PEPSICO_2022_10K", "VERIZON_2022_10K"):
            evidence.setdefault(row["doc_name"], {0}).update(e["evidence_page_num"] for e in row["evidence"])
    names = {"CORNING_2022_10K": "Corning", "PEPSICO_2022_10K": "PepsiCo", "VERIZON_2022_10K": "Verizon"}
    rng = random.Random(seed)
    questions = []
    for doc, pages in sorted(evidence.items()):
        reader = PdfReader(FILINGS / "pdfs" / f"{doc}.pdf")
        original = "\n\n".join(reader.pages[p].extract_text() or "" for p in sorted(pages))
        lines = [_table_line(line) for line in original.splitlines()]
        table = [found for found in lines if found is not None]
        labels = [label for label, _ in table]
        table = [(label, amount) for label, amount in table if labels.count(label) == 1]  # one figure per label
        chosen = rng.sample(table, min(per_year, len(table)))
        for back, scale in SCALES.items():
            year = 2022 - back
            text = _moved(original, back, scale)
            company = doc.split("_")[0]
            name = f"{company}_{year}_10K.txt" if named else f"{company}_10K_{LETTERS[back]}.txt"
            (folder / name).write_text(text, encoding="utf-8")
            for label, amount in chosen:
                expected = _scaled(amount, scale)
                questions.append(
                    q(
                        f"What was {names[doc]}'s '{label}' for fiscal {year}, in millions, in its {year} 10-K?",
                        name,
                        expected,
                    )
                )
    return questions


def _table_line(line: str) -> tuple[str, str] | None:
    """(label, first amount) of a table line such as 'Total current assets 7,453 7,659'."""
    m = re.match(r"^\s*([A-Za-z][A-Za-z ,'’\-&()]{8,70}?)\s+\$?\s*(\d{1,3}(?:,\d{3})+|\d{3,})\s+\$?\s*\(?\d", line)
    if not m or "Note" in m[1]:
        return None
    return m[1].strip(" ,"), m[2]


def _scaled(amount: str, scale: float) -> str:
    value = round(int(amount.replace(",", "")) * scale)
    return f"{value:,}" if "," in amount else str(value)


def _moved(text: str, back: int, scale: float) -> str:
    """The text of a filing ``back`` years earlier: years moved, amounts scaled."""
    if not back:
        return text
    text = _AMOUNT.sub(lambda m: m[0] if _YEAR.fullmatch(m[0]) else _scaled(m[0], scale), text)
    return _YEAR.sub(lambda m: str(int(m[0]) - back), text)


def q(question: str, source: str, expected: object) -> dict[str, Any]:
    return {"question": question, "source": source, "expected": str(expected)}


def figure_in(text: str, expected: str) -> bool:
    """Whether ``text`` states the number ``expected`` (thousands written with or without separators)."""
    numbers = re.findall(r"\d{1,3}(?:[,\u202f\u00a0 ]\d{3})+(?!\d)|\d+", text)
    return re.sub(r"\D", "", expected) in {re.sub(r"\D", "", n) for n in numbers}


def retrieval(retriever: Any, questions: list[dict[str, Any]]) -> dict[str, Any]:
    hits1 = hits5 = first = 0
    times, routed = [], 0
    for row in questions:
        seen: list[Any] = []
        t0 = time.perf_counter()
        passages = retriever.search(row["question"], k=5, on_route=seen.append)
        times.append((time.perf_counter() - t0) * 1000)
        routed += bool(seen)
        ranks = [i for i, p in enumerate(passages) if p.source == row["source"] and figure_in(p.text, row["expected"])]
        hits1 += bool(ranks) and ranks[0] == 0
        hits5 += bool(ranks)
        first += bool(passages) and passages[0].source == row["source"]
        if not ranks:
            print(f"  not in the top 5: {row['question']} ({row['expected']}, {row['source']})")
    n = len(questions)
    return {
        "right document first": round(first / n, 3),
        "recall@1": round(hits1 / n, 3),
        "recall@5": round(hits5 / n, 3),
        "routed": routed,
        "p50_ms": round(statistics.median(times), 1),
    }


def answers(answerer: Any, questions: list[dict[str, Any]]) -> dict[str, Any]:
    figure = cited = both = 0
    for row in questions:
        answer = answerer.answer(row["question"])
        shown = answer.display_text
        right_figure = figure_in(answer.text, row["expected"])  # the short answer's own (not its quote's)
        right_doc = any(s.passage.source == row["source"] for s in answer.cited_sources)
        figure += right_figure
        cited += right_doc
        both += right_figure and right_doc
        shown_row = {**row, "answer": shown, "short": answer.text, "figure": right_figure, "cited": right_doc}
        print(json.dumps(shown_row, ensure_ascii=False))
    n = len(questions)
    return {"right figure": round(figure / n, 3), "right year cited": round(cited / n, 3), "both": round(both / n, 3)}


def routing_cost(questions: list[dict[str, Any]], documents: int) -> dict[str, Any]:
    """Time of matching each question against ``documents`` cards (100 organisations x years, kinds), as the
    retriever does once its cards are read (they are kept until the store changes)."""
    from rag.search.cards import card_from_text
    from rag.search.routing import route

    kinds = ("10K", "10Q", "EARNINGS", "8K")
    cards = [
        card_from_text("r", f"COMPANY{i % 100}_{2000 + (i // 100) % 25}_{kinds[i % 4]}.pdf", "")
        for i in range(documents)
    ]
    times = []
    for row in questions * 5:
        t0 = time.perf_counter()
        route(row["question"], cards)
        times.append((time.perf_counter() - t0) * 1000)
    times.sort()
    return {
        "cards": documents,
        "p50_ms": round(times[len(times) // 2], 2),
        "p95_ms": round(times[int(len(times) * 0.95)], 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workdir", type=Path, default=ROOT / "eval-runs" / "similar-documents")
    ap.add_argument("--answers", type=int, default=0, help="questions answered by the default model, both ways")
    ap.add_argument("--per-year", type=int, default=4, help="table lines asked per filing year")
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--variants", nargs="+", choices=["named", "unnamed"], default=["named", "unnamed"],
        help="years in the file names (named), only inside the documents (unnamed)",
    )  # fmt: skip
    args = ap.parse_args()

    from ingest.pipeline import build_ingestor
    from rag.answering.answer import Answerer
    from rag.search.retrieval import build_retriever
    from rag.settings import load_settings

    settings = load_settings()
    results: dict[str, Any] = {}
    for named in [v == "named" for v in args.variants]:
        kind = "years in the file names" if named else "years only inside the documents"
        work = args.workdir / ("named" if named else "unnamed")
        corpus = work / "corpus"
        corpus.mkdir(parents=True, exist_ok=True)
        questions = (
            bird_survey(corpus, named)
            + compost_guide(corpus, named)
            + filing_copies(corpus, args.seed, args.per_year, named)
        )
        settings.paths.store_dir = work / "store"
        build_ingestor(settings).run([corpus])
        print(f"{kind}: {len(list(corpus.iterdir()))} documents, {len(questions)} questions")
        retriever = build_retriever(settings)
        for routing in (False, True):
            settings.retrieval.route_documents = routing
            results[f"{kind}, routing {'on' if routing else 'off'}"] = retrieval(retriever, questions)
        if args.answers:
            from rag.llm import load_llm

            llm = load_llm(settings)
            sample = random.Random(args.seed).sample(questions, min(args.answers, len(questions)))
            for routing in (False, True):
                settings.retrieval.route_documents = routing
                answerer = Answerer(settings, retriever, llm)
                results[f"{kind}, answers, routing {'on' if routing else 'off'}"] = answers(answerer, sample)
    results["routing cost"] = routing_cost(questions, 1000)
    print(json.dumps(results, indent=2))
    args.workdir.mkdir(parents=True, exist_ok=True)
    (args.workdir / "results.json").write_text(json.dumps(results, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
