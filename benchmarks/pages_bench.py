"""Scanned pages and page views: seconds per page against the raw libraries doing the same work.

1. OCR: a scanned PDF made here (the sample French PDF's pages and an English page, rendered at 200 dpi and
   saved as images only) read by ``read_document`` (find the scanned pages, render at ``ingest.ocr_dpi``,
   Tesseract), against the raw ``tesseract`` program on the same page images rendered by pypdfium2 at the
   same resolution: seconds per page and the ratio (ours / raw), and the share of the words found.
2. Page view: a cited page rendered with its passage highlighted (``render_page``: render, find the passage
   in the text layer, draw) against pypdfium2 rendering the same page to PNG with nothing else: ms per page
   and the ratio, for the sample PDF and for FinanceBench statement pages (text-heavy tables); then the same
   view served from the on-disk cache; then a scanned page (its words placed by Tesseract).

    .venv/bin/python benchmarks/pages_bench.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
FINANCEBENCH = ROOT.parent / "shared" / "eval" / "financebench_dev" / "pdfs"
STATEMENTS = [("ADOBE_2015_10K.pdf", 59), ("AMD_2015_10K.pdf", 60), ("PEPSICO_2021_10K.pdf", 63)]


def timed(fn, repeat: int) -> tuple[float, object]:
    """Median seconds of ``repeat`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def raw_tesseract(images: list, languages: str) -> list[str]:
    texts = []
    for image in images:
        png = io.BytesIO()
        image.save(png, format="PNG")
        done = subprocess.run(
            ["tesseract", "stdin", "stdout", "-l", languages],
            input=png.getvalue(),
            capture_output=True,
            env={**os.environ, "OMP_THREAD_LIMIT": "1"},
            check=True,
        )
        texts.append(done.stdout.decode())
    return texts


def bench_ocr(repeat: int) -> None:
    import pypdfium2 as pdfium
    from pypdf import PdfReader

    from devkit import SAMPLE_DATA
    from devkit.scans import ENGLISH_LINES, rendered_pdf_page, scanned_pdf, text_page_image, words_found
    from ingest.ocr import OcrOptions, tesseract_program
    from ingest.readers import read_document

    if tesseract_program() is None:
        print("OCR: tesseract not installed, skipped")
        return
    pdf = SAMPLE_DATA / "politique-teletravail.pdf"
    expected = [page.extract_text() for page in PdfReader(pdf).pages] + ["\n".join(ENGLISH_LINES)]
    images = [rendered_pdf_page(pdf, n) for n in (1, 2, 3)] + [text_page_image()]
    options = OcrOptions()
    with tempfile.TemporaryDirectory() as tmp:
        scan = Path(tmp) / "scan.pdf"
        scan.write_bytes(scanned_pdf(images))
        ours_s, document = timed(lambda: read_document(scan, "pdf", options), repeat)
        doc = pdfium.PdfDocument(str(scan))
        rendered = [doc[i].render(scale=options.dpi / 72, grayscale=True).to_pil() for i in range(len(doc))]
        raw_s, raw_texts = timed(lambda: raw_tesseract(rendered, options.languages), repeat)
        doc.close()
    n = len(images)
    ours_found = statistics.mean(words_found(e, p.text) for e, p in zip(expected, document.pages, strict=True))
    raw_found = statistics.mean(words_found(e, t) for e, t in zip(expected, raw_texts, strict=True))
    print(f"OCR, {n} scanned pages at {options.dpi} dpi ({options.languages}), median of {repeat}:")
    print(f"  ours (read_document)    {ours_s / n:6.2f} s/page   words found {ours_found:.3f}")
    print(f"  raw tesseract           {raw_s / n:6.2f} s/page   words found {raw_found:.3f}   (render excluded)")
    print(f"  ratio ours/raw          {ours_s / raw_s:6.2f}")


def bench_views(repeat: int) -> None:
    import pypdfium2 as pdfium
    from pypdf import PdfReader

    from devkit import SAMPLE_DATA
    from devkit.scans import scanned_pdf, text_page_image
    from ingest.page_view import DEFAULT_DPI, PageCache, render_page
    from ingest.readers import clean_text

    pages = [(SAMPLE_DATA / "politique-teletravail.pdf", 2)]
    pages += [(FINANCEBENCH / name, n) for name, n in STATEMENTS if (FINANCEBENCH / name).exists()]
    print(f"\nPage view at {DEFAULT_DPI} dpi, median of {repeat} (ms per page):")
    print(f"  {'page':34s} {'raw render':>10s} {'ours':>8s} {'ratio':>6s} {'boxes':>5s} {'cached':>7s}")
    with tempfile.TemporaryDirectory() as tmp:
        cache = PageCache(Path(tmp) / "cache")
        for path, number in pages:
            text = clean_text(PdfReader(path).pages[number - 1].extract_text())
            start = len(text) // 3
            passage = text[start : start + 600]  # a chunk-sized passage from the middle of the page

            def raw(path=path, number=number) -> bytes:
                doc = pdfium.PdfDocument(str(path))
                out = io.BytesIO()
                doc[number - 1].render(scale=DEFAULT_DPI / 72).to_pil().save(out, format="PNG")
                doc.close()
                return out.getvalue()

            raw_s, _ = timed(raw, repeat)
            ours_s, view = timed(
                lambda path=path, number=number, p=passage: render_page(path, "pdf", number, p), repeat
            )
            cache.view(path, "pdf", number, passage)
            cached_s, _ = timed(lambda path=path, number=number, p=passage: cache.view(path, "pdf", number, p), repeat)
            label = f"{path.name} p.{number}"
            print(
                f"  {label:34s} {raw_s * 1000:10.0f} {ours_s * 1000:8.0f} {ours_s / raw_s:6.2f} "
                f"{view.boxes:5d} {cached_s * 1000:7.1f}"
            )
        scan = Path(tmp) / "scan.pdf"
        scan.write_bytes(scanned_pdf([text_page_image()]))
        ours_s, view = timed(lambda: render_page(scan, "pdf", 1, "Its maximum safe load is 42 tonnes"), repeat)
        print(f"  {'scanned page (Tesseract boxes)':34s} {'':10s} {ours_s * 1000:8.0f} {'':6s} {view.boxes:5d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    bench_ocr(args.repeat)
    bench_views(args.repeat)


if __name__ == "__main__":
    main()
