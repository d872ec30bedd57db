"""How table pages come out of each PDF text extractor, on the FinanceBench evidence pages (financial
statements, mostly tables): the method for tables was chosen with these figures.

For each extractor: tokens of the embedding model per page, share of lines holding only numbers (a
number far from its label), table rows (lines with letters and digits) longer than a chunk and rows cut
across chunks when the page is chunked as the ingest does, and milliseconds per page. ``ours`` is
``read_document`` (pypdf, dot leaders collapsed), against the raw pypdf it builds on.

    .venv/bin/python benchmarks/tables_bench.py
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FINANCEBENCH = ROOT.parent / "shared" / "eval" / "financebench_dev"


def evidence_pages() -> list[tuple[Path, int]]:
    rows = [json.loads(line) for line in (FINANCEBENCH / "questions.jsonl").read_text().splitlines() if line]
    pages = sorted({(q["doc_name"], e["evidence_page_num"]) for q in rows for e in q["evidence"]})
    return [(FINANCEBENCH / "pdfs" / f"{doc}.pdf", n) for doc, n in pages]


def extractors() -> dict:
    import importlib.util

    import pypdfium2 as pdfium
    from pypdf import PdfReader

    from ingest.readers import clean_text

    def layout_cells(page) -> str:
        text = page.extract_text(extraction_mode="layout")
        return "\n".join(re.sub(r" {3,}", " | ", line.strip()) for line in text.splitlines() if line.strip())

    def plumber(path: Path, n: int) -> str:
        import pdfplumber

        with pdfplumber.open(path) as pdf:
            return pdf.pages[n].extract_text() or ""

    found = {
        "pypdf (raw)": lambda path, n: PdfReader(path).pages[n].extract_text(),
        "ours": lambda path, n: clean_text(PdfReader(path).pages[n].extract_text()),
        "pypdf layout, cells": lambda path, n: clean_text(layout_cells(PdfReader(path).pages[n])),
        "pypdfium2": lambda path, n: pdfium.PdfDocument(path)[n].get_textpage().get_text_bounded(),
    }
    if importlib.util.find_spec("pdfplumber"):  # not a dependency: compared when installed
        found["pdfplumber"] = plumber
    return found


def main() -> None:
    from ingest.chunking import split_pages
    from ingest.readers import Page
    from rag.models.embedding import embedding_model_info, load_token_counter
    from rag.settings import Settings

    settings = Settings()
    counter = load_token_counter(embedding_model_info(settings))
    size, overlap = settings.chunking.chunk_tokens, settings.chunking.overlap_tokens
    pages = evidence_pages()
    print(f"{len(pages)} FinanceBench evidence pages; chunks of {size} tokens")
    header = ["tokens/page", "number-only lines", "rows > chunk", "rows cut", "ms/page"]
    print(f"{'extractor':22s} " + " ".join(h.rjust(w) for h, w in zip(header, (11, 17, 12, 9, 8), strict=True)))
    for name, extract in extractors().items():
        tokens = lines = numeric = rows = long_rows = cut = 0
        seconds = 0.0
        for path, n in pages:
            t0 = time.perf_counter()
            text = extract(path, n).replace("\r\n", "\n")
            seconds += time.perf_counter() - t0
            tokens += counter.count(text)
            page_lines = [line.strip() for line in text.splitlines() if line.strip()]
            lines += len(page_lines)
            numeric += sum(1 for line in page_lines if re.search(r"\d", line) and not re.search(r"[A-Za-z]", line))
            chunks = split_pages([Page(1, text)], counter, size, overlap)
            for line in page_lines:
                if re.search(r"[A-Za-z]", line) and re.search(r"\d", line):
                    rows += 1
                    long_rows += counter.count(line) > size
                    cut += not any(line in c.text for c in chunks)
        print(
            f"{name:22s} {tokens / len(pages):11.0f} {numeric / lines:16.1%} {long_rows:12d} "
            f"{cut:4d}/{rows:<4d} {seconds / len(pages) * 1000:8.0f}"
        )


if __name__ == "__main__":
    main()
