"""Scanned pages and images are read by Tesseract; without it, scans are reported and the run goes on."""

from __future__ import annotations

import io

import pytest

import ingest.ocr
import ingest.readers
from devkit.scans import ENGLISH_LINES, rendered_pdf_page, scanned_pdf, text_page_image, words_found
from ingest.readers import read_document
from tests.conftest import SAMPLE_DATA, make_settings
from tests.fakes import fake_ingestor

PDF = SAMPLE_DATA / "politique-teletravail.pdf"
needs_tesseract = pytest.mark.skipif(
    ingest.ocr.tesseract_program() is None,
    reason="Tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-fra tesseract-ocr-eng; "
    "setup.sh and .ci/run install it)",
)


def french_layer(number: int = 1) -> str:
    from pypdf import PdfReader

    return PdfReader(PDF).pages[number - 1].extract_text()


@needs_tesseract
def test_a_scanned_french_page_is_read_by_ocr(tmp_path):
    scan = tmp_path / "scan-fr.pdf"
    scan.write_bytes(scanned_pdf([rendered_pdf_page(PDF, 1)]))
    document = read_document(scan, "pdf")
    [page] = document.pages
    assert page.ocr and page.number == 1 and document.ocr_seconds > 0
    assert words_found(french_layer(1), page.text) >= 0.95
    assert "télétravail" in page.text  # accents read with the French data


@needs_tesseract
def test_an_english_image_and_a_multi_page_tiff_are_read(tmp_path):
    png = tmp_path / "inspection.png"
    text_page_image().save(png)
    [page] = read_document(png, "image").pages
    assert page.ocr and page.number == 1
    assert words_found("\n".join(ENGLISH_LINES), page.text) >= 0.95 and "42 tonnes" in page.text
    tiff = tmp_path / "two-pages.tiff"
    first, second = text_page_image(ENGLISH_LINES[:3]), text_page_image(ENGLISH_LINES[3:])
    first.save(tiff, save_all=True, append_images=[second])
    pages = read_document(tiff, "image").pages
    assert [p.number for p in pages] == [1, 2] and "42 tonnes" in pages[1].text


@needs_tesseract
def test_only_the_scanned_page_of_a_mixed_pdf_is_read_by_ocr(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(PDF))  # three pages with a text layer
    scan = PdfReader(io.BytesIO(scanned_pdf([text_page_image()])))
    writer.add_page(scan.pages[0])
    mixed = tmp_path / "mixed.pdf"
    with mixed.open("wb") as f:
        writer.write(f)
    pages = read_document(mixed, "pdf").pages
    assert [p.number for p in pages if p.ocr] == [4]
    assert pages[0].text == read_document(PDF, "pdf").pages[0].text  # text layers are kept as they are


@needs_tesseract
def test_ocr_chunks_carry_their_page_and_the_ocr_mark(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan-fr.pdf").write_bytes(scanned_pdf([rendered_pdf_page(PDF, 1), rendered_pdf_page(PDF, 2)]))
    text_page_image().save(docs / "inspection.png")
    (docs / "notes.txt").write_text("Plain notes, no OCR needed.", encoding="utf-8")
    ingestor, _ = fake_ingestor(make_settings(tmp_path))
    report = ingestor.run([docs])
    assert report.failed == [] and report.ocr_pages == 3 and report.ocr_seconds > 0
    metas = [m for _, m in ingestor.store.iter_metadatas()]
    scanned = [m for m in metas if m["source"] != "notes.txt"]
    assert scanned and all(m.get("ocr") is True for m in scanned)
    assert {m["page"] for m in scanned if m["source"] == "scan-fr.pdf"} == {1, 2}
    assert all("ocr" not in m for m in metas if m["source"] == "notes.txt")


def test_without_tesseract_a_scan_is_reported_and_the_run_goes_on(tmp_path, monkeypatch):
    monkeypatch.setattr(ingest.ocr, "tesseract_program", lambda: None)
    monkeypatch.setattr(ingest.readers, "tesseract_program", lambda: None)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan-fr.pdf").write_bytes(scanned_pdf([rendered_pdf_page(PDF, 1)]))
    text_page_image().save(docs / "inspection.png")
    (docs / "notes.txt").write_text("Plain notes.", encoding="utf-8")
    report = fake_ingestor(make_settings(tmp_path))[0].run([docs])
    assert report.added == ["notes.txt"]
    reasons = {p.source: p.reason for p in report.failed}
    assert "no text layer: install tesseract-ocr" in reasons["scan-fr.pdf"]
    assert "no text layer: install tesseract-ocr" in reasons["inspection.png"]


def test_ocr_off_and_missing_language_data_are_named(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "scan.pdf").write_bytes(scanned_pdf([text_page_image()]))
    settings = make_settings(tmp_path)
    settings.ingest.ocr = False
    report = fake_ingestor(settings)[0].run([docs])
    assert "OCR is off (ingest.ocr = false)" in report.failed[0].reason
    if ingest.ocr.tesseract_program() is None:
        return
    settings.ingest.ocr, settings.ingest.ocr_languages = True, "zzz"
    report = fake_ingestor(settings)[0].run([docs])
    assert "lacks the language data for 'zzz' (install tesseract-ocr-zzz)" in report.failed[0].reason
