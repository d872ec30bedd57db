"""Chunks that know their document: a context header (file name, stated title, section heading) is embedded,
keyword-indexed and reranked with each chunk, stored beside it, never inside its text or span."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ingest.chunking import context_header, split_pages
from ingest.readers import meaningful_title, read_document
from rag.search.retrieval import Retriever
from rag.text import search_text
from tests.conftest import SAMPLE_DATA
from tests.fakes import FakeCounter, FakeEmbedder, fake_ingestor


def test_header_names_file_title_and_section_each_once():
    header = context_header("filings/3M_2018_10K.pdf", "3M annual report", "Item 7. Management's Discussion")
    assert header == "filings / 3M 2018 10K — 3M annual report — Item 7. Management's Discussion"
    # a title or section the file name (or the title) already says is not repeated
    assert context_header("compost-guide.md", "Compost guide", "Compost guide") == "compost guide"
    assert context_header("notes.txt", "", "") == "notes"


def test_titles_that_name_nothing_are_ignored():
    assert meaningful_title("0001018724-18-000005") == ""  # an SEC accession number
    assert meaningful_title("Document1") == "" and meaningful_title("Untitled") == ""
    assert meaningful_title("Microsoft Word - contrat de bail.docx") == "contrat de bail"
    assert meaningful_title("  Politique de   télétravail ") == "Politique de télétravail"
    assert meaningful_title(None) == ""


def test_markdown_headings_are_the_sections_of_the_chunks_below_them(tmp_path):
    md = tmp_path / "guide.md"
    md.write_text(
        "# Guide du compost\n\nIntroduction courte.\n\n## Matériel\n\n"
        + "Un bac en bois suffit. " * 20
        + "\n\n## Durée\n\n"
        + "Il faut compter six mois. " * 20,
        encoding="utf-8",
    )
    document = read_document(md, "markdown")
    assert document.title == "Guide du compost"
    chunks = split_pages(document.pages, FakeCounter(), 40, 5)
    sections = {c.text.split(".")[0].strip("# \n"): c.section for c in chunks}
    assert sections["Guide du compost\n\nIntroduction courte"] == "Guide du compost"
    assert {c.section for c in chunks if "bac en bois" in c.text and "six mois" not in c.text} == {"Matériel"}
    assert {c.section for c in chunks if "six mois" in c.text and "bac" not in c.text} == {"Durée"}


def test_pdf_bookmarks_and_title_name_the_sections_of_their_pages(tmp_path):
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter()
    for page in PdfReader(SAMPLE_DATA / "politique-teletravail.pdf").pages:
        writer.add_page(page)
    writer.add_outline_item("Jours autorisés", 1)  # page 2 (pages count from 0 here)
    writer.add_metadata({"/Title": "Politique de télétravail 2025"})
    pdf = tmp_path / "politique.pdf"
    with pdf.open("wb") as fh:
        writer.write(fh)
    document = read_document(pdf, "pdf")
    assert document.title == "Politique de télétravail 2025"
    chunks = split_pages(document.pages, FakeCounter(), 60, 10)
    assert {c.section for c in chunks if c.page == 1} == {""}
    # the section goes on to the pages after its bookmark
    assert {c.section for c in chunks if c.page >= 2} == {"Jours autorisés"}


def test_ingest_keeps_the_header_beside_the_chunk_and_embeds_them_together(settings, corpus):
    ingestor, embedder = fake_ingestor(settings)
    ingestor.run([corpus])
    records = ingestor.store.collection.get(include=["documents", "metadatas", "embeddings"])
    by_source = {}
    for text, meta, vector in zip(records["documents"], records["metadatas"], records["embeddings"], strict=True):
        by_source.setdefault(meta["source"], []).append((text, meta, vector))
        assert meta["context"] and meta["context"] not in text  # beside the passage, never inside it
        page_text = _page_text(corpus / meta["source"], meta["page"])
        assert page_text[meta["start"] : meta["end"]] == text  # the span is the passage's alone
        expected = FakeEmbedder._vector(search_text(text, meta["context"]))
        assert list(vector) == pytest.approx(expected, abs=1e-5)
    assert all(m["context"].startswith("incident postmortem") for _, m, _ in by_source["incident-postmortem.html"])
    compost = {m["context"] for _, m, _ in by_source["compost-guide.md"]}
    assert len(compost) > 1 and all(c.startswith("compost guide — ") for c in compost)  # title, then sections


def test_a_passage_that_never_names_its_document_is_found_by_its_header(settings, tmp_path):
    docs = tmp_path / "filings"
    docs.mkdir()
    same = "Capital expenditures were 1,577 million for the year, mostly new plants."
    for name in ("acme_2018_annual_report.txt", "globex_2019_annual_report.txt", "initech_2020_annual_report.txt"):
        (docs / name).write_text(same, encoding="utf-8")
    ingestor, _ = fake_ingestor(settings)
    ingestor.run([docs])
    for question, source in (
        ("What were Globex capital expenditures in 2019?", "globex_2019_annual_report.txt"),
        ("capital expenditures of Initech, 2020", "initech_2020_annual_report.txt"),
    ):
        best = Retriever(ingestor.store, FakeEmbedder(), settings).search(question, k=1)[0]
        assert best.source == source and best.text == same and "Globex" not in best.text


def test_changing_the_header_setting_re_embeds_every_chunk(settings, corpus):
    first = fake_ingestor(settings)[0].run([corpus])
    settings.chunking.context_tokens = 0
    ingestor, _ = fake_ingestor(settings)
    off = ingestor.run([corpus])
    assert sorted(off.updated) == sorted(first.added)
    assert off.chunks_written == first.chunks_written and off.chunks_reused == 0  # new vectors, not the old ones
    assert all("context" not in m for _, m in ingestor.store.iter_metadatas())
    again = fake_ingestor(settings)[0].run([corpus])
    assert again.chunks_written == 0 and len(again.unchanged) == len(first.added)


def _page_text(path: Path, number: int) -> str:
    pages = read_document(
        path, {".pdf": "pdf", ".md": "markdown", ".html": "html", ".docx": "docx"}.get(path.suffix, "text")
    ).pages
    return next(p.text for p in pages if p.number == number)


def test_copies_in_two_folders_get_their_own_folder_in_the_header(settings, tmp_path):
    for year in ("2023", "2024"):
        folder = tmp_path / "reports" / year
        folder.mkdir(parents=True)
        shutil.copy(SAMPLE_DATA / "bird-survey-2024.txt", folder / "survey.txt")
    ingestor, _ = fake_ingestor(settings)
    ingestor.run([tmp_path / "reports"])
    contexts = {m["source"]: m["context"] for _, m in ingestor.store.iter_metadatas()}
    assert contexts == {"2023/survey.txt": "2023 / survey", "2024/survey.txt": "2024 / survey"}
