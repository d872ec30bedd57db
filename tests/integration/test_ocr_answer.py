"""A scanned page, read by OCR, answers a question with a citation to that page (real embedder and model)."""

from __future__ import annotations

import pytest

import ingest.ocr
from devkit.scans import rendered_pdf_page, scanned_pdf, text_page_image
from rag.answering.answer import build_answerer
from rag.settings import PathSettings, Settings
from tests.conftest import SAMPLE_DATA
from tests.integration.test_real_ingest import cli

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        ingest.ocr.tesseract_program() is None,
        reason="Tesseract is not installed (apt-get install tesseract-ocr tesseract-ocr-fra tesseract-ocr-eng)",
    ),
]


@pytest.fixture(scope="module")
def answerer(tmp_path_factory):
    work = tmp_path_factory.mktemp("ocr")
    docs = work / "docs"
    docs.mkdir()
    french = SAMPLE_DATA / "politique-teletravail.pdf"
    # page 1: a French policy page, page 2: an English inspection report; both scans without a text layer
    (docs / "scanned-archive.pdf").write_bytes(scanned_pdf([rendered_pdf_page(french, 2), text_page_image()]))
    store = work / "store"
    done = cli("ingest", str(docs), "--store", str(store))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "read by OCR" in done.stdout + done.stderr
    assert cli("rag", "model").returncode == 0
    return build_answerer(Settings(paths=PathSettings(store_dir=store)))


def test_a_question_about_a_scanned_english_page_cites_that_page(answerer):
    answer = answerer.answer("What is the maximum safe load of the north crane?")
    assert answer.found and "42" in answer.text, answer.display_text
    cited = answer.cited_sources
    assert cited and all(s.passage.source == "scanned-archive.pdf" for s in cited)
    assert any(s.passage.page == 2 and "42 tonnes" in s.passage.text for s in cited), answer.display_text


def test_a_question_about_a_scanned_french_page_cites_that_page(answerer):
    answer = answerer.answer("Quel est le montant de l'indemnité mensuelle de télétravail ?")
    assert answer.found and "25" in answer.text, answer.display_text
    assert any(s.passage.page == 1 and "25 euros" in s.passage.text for s in answer.cited_sources), answer.display_text
