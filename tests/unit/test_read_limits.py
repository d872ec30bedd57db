"""Hostile files cost their budget, not the ingest (issue 38, item 1): each is refused within seconds, named
with the budget it passed, and the other files of the run go in."""

from __future__ import annotations

import resource
import time

import pytest

from ingest.limits import ReadLimits
from ingest.pipeline import Ingestor
from ingest.readers import read_document
from rag.errors import DocumentError
from tests.bombs import bomb_docx, docx_with_body, many_members_docx, pdf, small_docx, text_page, write
from tests.fakes import fake_ingestor


def refused(path, kind, limits=None, within_s: float = 5.0) -> str:
    t0 = time.perf_counter()
    with pytest.raises(DocumentError) as exc:
        read_document(path, kind, limits=limits)
    took = time.perf_counter() - t0
    assert took < within_s, f"{path.name} took {took:.1f} s to be refused"
    return str(exc.value)


def test_the_issue_bomb_is_refused_from_the_zip_directory(tmp_path):
    bomb = write(tmp_path / "bomb.docx", bomb_docx(30))  # 30 MB of paragraphs, about 120 KB zipped
    assert bomb.stat().st_size < 200 * 1024
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    said = refused(bomb, "docx", within_s=1.0)
    assert "word/document.xml unpacks to 30.0 MB" in said and "decompression bomb" in said
    assert "ingest.max_unpack_ratio" in said
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 50 * 1024  # nothing inflated (KB)


def test_many_small_parts_that_unpack_huge_are_refused(tmp_path):
    # each part under the ratio check's floor (1 MB), 600 of them: 600 MB unpacked from a few hundred KB
    path = write(tmp_path / "parts.docx", many_members_docx(600, 1024))
    said = refused(path, "docx")
    assert "too large when unpacked: 601 MB, above the limit of 512 MB (ingest.max_unpacked_mb)" in said


def test_a_bomb_nested_inside_a_word_file_is_never_inflated(tmp_path):
    # an embedded object that is itself a bomb: stored as it is, never read by the Word reader
    inner = bomb_docx(30)
    body = (
        '<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
        "<w:body><w:p><w:r><w:t>The contract renews every March.</w:t></w:r></w:p></w:body></w:document>"
    )
    path = write(tmp_path / "nested.docx", docx_with_body(body.encode(), {"word/embeddings/inner.docx": inner}))
    t0 = time.perf_counter()
    document = read_document(path, "docx")
    assert time.perf_counter() - t0 < 2 and "renews every March" in document.pages[0].text


def test_too_many_paragraphs_and_characters_are_refused(tmp_path):
    path = write(tmp_path / "long.docx", small_docx([f"Paragraph number {i} of the report." for i in range(300)]))
    assert "300 paragraphs, above the limit of 100 (ingest.max_paragraphs)" in refused(
        path, "docx", ReadLimits(max_paragraphs=100)
    )
    assert "more than 1,000 characters of text (ingest.max_characters)" in refused(
        path, "docx", ReadLimits(max_characters=1000)
    )
    text = write(tmp_path / "long.txt", ("word " * 1000).encode())
    assert "ingest.max_characters" in refused(text, "text", ReadLimits(max_characters=1000))
    assert read_document(path, "docx").pages  # within the default budgets: read


def test_a_pdf_of_ten_thousand_blank_pages_is_refused_before_its_pages_are_read(tmp_path):
    path = write(tmp_path / "blank.pdf", pdf([b""] * 10_000))
    assert "10,000 pages, above the limit of 5,000 (ingest.max_pages)" in refused(path, "pdf")


def test_a_pdf_page_with_a_50_mb_content_stream_is_refused(tmp_path):
    drawing = b"0 0 m 1 1 l S\n" * (50 * 2**20 // 14)
    path = write(tmp_path / "stream.pdf", pdf([text_page("A first page of real text."), drawing]))
    assert path.stat().st_size < 200 * 1024
    said = refused(path, "pdf", within_s=3.0)  # before: 31 s and 1.1 GB to read it whole
    assert "a page holds 50 MB of drawing commands, above the limit of 16 MB (ingest.max_page_content_mb)" in said


def test_reading_past_its_time_is_stopped(tmp_path):
    path = write(tmp_path / "pages.pdf", pdf([text_page(f"Page {i} of the annual report.") for i in range(40)]))
    assert "took longer than 0.001 s to read" in refused(path, "pdf", ReadLimits(max_seconds=0.001))
    assert len(read_document(path, "pdf").pages) == 40


def test_an_ingest_refuses_the_bomb_and_keeps_the_other_files(tmp_path, settings):
    docs = settings.paths.docs_dir
    docs.mkdir(parents=True)
    write(docs / "bomb.docx", bomb_docx(30))
    write(docs / "blank.pdf", pdf([b""] * 6000))
    (docs / "notes.txt").write_text("The storage outage lasted 47 minutes.", encoding="utf-8")
    ingestor: Ingestor = fake_ingestor(settings)[0]
    t0 = time.perf_counter()
    report = ingestor.run([docs])
    assert time.perf_counter() - t0 < 30
    assert report.added == ["notes.txt"]
    reasons = {p.source: p.reason for p in report.failed}
    assert "decompression bomb" in reasons["bomb.docx"] and "ingest.max_pages" in reasons["blank.pdf"]
