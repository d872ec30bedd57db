"""The cited page, shown: a PDF page (or a scan) rendered with the passage highlighted, cached, served."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import ingest.ocr
import ingest.page_view
from api.server import create_app
from devkit.scans import scanned_pdf, text_page_image
from ingest.page_view import PageCache, locate, render_page
from rag.errors import DocumentError
from tests.conftest import SAMPLE_DATA
from tests.unit.test_api import service  # noqa: F401  (the API's fixture: real store, fake models)

PDF = SAMPLE_DATA / "politique-teletravail.pdf"
PASSAGE = "Une indemnité forfaitaire de 25 euros par mois couvre les frais de connexion internet et d'électricité."


def yellow_pixels(png: bytes) -> int:
    from PIL import Image

    with Image.open(io.BytesIO(png)) as im:
        rgb = im.convert("RGB")
        return sum(1 for r, g, b in rgb.getdata() if r > 200 and 150 < g < 240 and b < 140)


def test_locate_matches_letters_and_digits_whatever_the_spacing_case_and_leaders():
    page = list("Total assets.......... $ 11,726,472\r\nGoodwill ...... 5,366,881")
    first, last = locate(page, "total assets … $ 11,726,472 Goodwill")
    assert "".join(page[first : last + 1]) == "Total assets.......... $ 11,726,472\r\nGoodwill"
    assert locate(page, "Intangible assets") is None and locate(page, "...") is None


def test_locate_bounds_a_passage_by_its_start_and_end_when_the_middle_differs():
    words = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa"
    words = (words + " quebec romeo").split()  # noqa: SIM905
    units = [w + " " for w in words + words]
    garbled = " ".join(words).replace("india", "indja")  # a word in the middle read differently
    assert locate(units, garbled) == (0, len(words) - 1)


def test_a_pdf_page_is_rendered_with_the_passage_highlighted():
    plain = render_page(PDF, "pdf", 2, None)
    view = render_page(PDF, "pdf", 2, PASSAGE)
    assert plain.boxes == 0 and view.boxes >= 1
    assert (view.width, view.height) == (plain.width, plain.height)
    assert yellow_pixels(view.png) > 20 * yellow_pixels(plain.png) + 1000
    missing = render_page(PDF, "pdf", 2, "A sentence that is on no page of this document at all.")
    assert missing.boxes == 0


def test_a_page_that_does_not_exist_is_a_clear_error():
    with pytest.raises(DocumentError, match="has 3 pages, not a page 9"):
        render_page(PDF, "pdf", 9, None)
    with pytest.raises(DocumentError, match="PDF and image files only"):
        render_page(SAMPLE_DATA / "compost-guide.md", "markdown", 1, None)


@pytest.mark.skipif(ingest.ocr.tesseract_program() is None, reason="Tesseract is not installed")
def test_a_scanned_page_is_highlighted_from_the_words_tesseract_places(tmp_path):
    scan = tmp_path / "scan.pdf"
    scan.write_bytes(scanned_pdf([text_page_image()]))
    view = render_page(scan, "pdf", 1, "Its maximum safe load is 42 tonnes after the new brake was fitted.")
    assert view.boxes == 1 and yellow_pixels(view.png) > 1000
    png = tmp_path / "scan.png"
    text_page_image().save(png)
    assert render_page(png, "image", 1, "The next inspection is due in September").boxes == 1


def test_rendered_pages_are_cached_until_the_file_changes(tmp_path, monkeypatch):
    pdf = tmp_path / "policy.pdf"
    pdf.write_bytes(PDF.read_bytes())
    cache = PageCache(tmp_path / "cache", max_files=2)
    first = cache.view(pdf, "pdf", 2, PASSAGE)
    calls = []
    real = ingest.page_view.render_page
    monkeypatch.setattr(ingest.page_view, "render_page", lambda *a: calls.append(a) or real(*a))
    assert cache.view(pdf, "pdf", 2, PASSAGE) == first and calls == []
    os.utime(pdf, ns=(pdf.stat().st_atime_ns, pdf.stat().st_mtime_ns + 10**9))
    cache.view(pdf, "pdf", 2, PASSAGE)
    cache.view(pdf, "pdf", 1, None)
    cache.view(pdf, "pdf", 3, None)
    assert len(calls) == 3 and len(list((tmp_path / "cache").glob("*.png"))) == 2  # the oldest went


def test_the_api_serves_a_page_with_a_chunk_highlighted(service):  # noqa: F811
    client = TestClient(create_app(service))
    store = service.retriever.store
    chunk_id, (text, meta) = next(
        (cid, rec) for cid, rec in store.records(list(store.ids())).items() if "25 euros" in rec[0]
    )
    url = f"/v1/documents/politique-teletravail.pdf/pages/{meta['page']}.png"
    got = client.get(url, params={"highlight": chunk_id})
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert int(got.headers["x-highlight-boxes"]) >= 1 and got.content.startswith(b"\x89PNG")
    assert client.get(url).headers["x-highlight-boxes"] == "0"
    other_page = f"/v1/documents/politique-teletravail.pdf/pages/{meta['page'] % 3 + 1}.png"
    assert client.get(other_page, params={"highlight": chunk_id}).status_code == 400
    assert client.get(url, params={"highlight": "nope"}).status_code == 404
    assert client.get("/v1/documents/compost-guide.md/pages/1.png").status_code == 400
    assert client.get("/v1/documents/missing.pdf/pages/1.png").status_code == 404
    assert client.get("/v1/documents/politique-teletravail.pdf/pages/7.png").status_code == 400
    assert Path(service.settings.paths.store_dir, "page-views").is_dir()  # cached beside the store
