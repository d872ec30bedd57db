"""Tables stay readable: a row's label and its numbers stay together, in one line and in one chunk."""

from __future__ import annotations

import io

from ingest.chunking import split_pages
from ingest.readers import Page, clean_text, read_document
from tests.fakes import FakeCounter

ROWS = [
    ("Cash and cash equivalents", "$ 876,560", "$ 1,117,400"),
    ("Short-term investments", "3,111,524", "2,622,091"),
    ("Trade receivables, net of allowances for doubtful accounts", "672,006", "591,800"),
    ("Capital expenditures", "(1,577)", "(1,488)"),
] * 12


def statement(leader: str = "." * 90) -> str:
    lines = ["CONSOLIDATED BALANCE SHEETS", "(In thousands)", "2015 2014"]
    lines += [f"{label}{leader} {a} {b}" for label, a, b in ROWS]
    return "\n".join(lines)


def test_dot_leaders_become_one_ellipsis_and_keep_label_and_numbers_on_one_line():
    cleaned = clean_text(statement())
    assert "Capital expenditures … (1,577) (1,488)" in cleaned
    assert clean_text(statement(" . . . . . . .")).count("…") == len(ROWS)
    assert clean_text("Wait... then 1.2.3.4 and 3.14") == "Wait... then 1.2.3.4 and 3.14"  # not leaders


def test_a_chunk_never_cuts_a_table_row_in_half():
    text = clean_text(statement())
    chunks = split_pages([Page(1, text)], FakeCounter(), chunk_tokens=48, overlap_tokens=8)
    assert len(chunks) > 5
    rows = text.splitlines()
    for chunk in chunks:
        lines = chunk.text.splitlines()
        assert all(line in rows for line in lines), chunk.text  # whole rows only
    for row in rows:
        assert any(row in c.text.splitlines() for c in chunks)


def test_leaders_in_a_real_pdf_are_collapsed_and_the_spans_still_hold(tmp_path):
    from pypdf import PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    page = writer.add_blank_page(width=612, height=792)
    font = DictionaryObject(
        {
            NameObject("/Type"): NameObject("/Font"),
            NameObject("/Subtype"): NameObject("/Type1"),
            NameObject("/BaseFont"): NameObject("/Helvetica"),
        }
    )
    page[NameObject("/Resources")] = DictionaryObject(
        {NameObject("/Font"): DictionaryObject({NameObject("/F1"): writer._add_object(font)})}
    )
    lines = [f"{label}{'.' * 40} {a} {b}" for label, a, b in ROWS[:4]]
    ops = "BT /F1 9 Tf 40 740 Td 12 TL " + " ".join(f"({line}) '" for line in lines) + " ET"
    stream = DecodedStreamObject()
    stream.set_data(ops.encode("latin-1"))
    page[NameObject("/Contents")] = writer._add_object(stream)
    buf = io.BytesIO()
    writer.write(buf)
    pdf = tmp_path / "statement.pdf"
    pdf.write_bytes(buf.getvalue())
    [read] = read_document(pdf, "pdf").pages
    assert "Capital expenditures … (1,577) (1,488)" in read.text
    assert "...." not in read.text
