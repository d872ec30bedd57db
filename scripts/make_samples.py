"""Regenerate the binary sample documents in data/ (a PDF and a .docx) from text sources.

Developer tool, not part of the product: needs `pip install fpdf2 python-docx`.
    python scripts/make_samples.py
"""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).parent
DATA = HERE.parent / "data"


def make_pdf() -> None:
    from fpdf import FPDF

    text = (HERE / "sample_sources" / "politique-teletravail.txt").read_text(encoding="utf-8")
    pdf = FPDF(format="A4")
    pdf.set_title("Politique de télétravail de la Coopérative Lumen")
    pdf.set_author("sourcier (document fictif)")
    pdf.set_creation_date(__import__("datetime").datetime(2025, 2, 12))
    pdf.set_auto_page_break(auto=True, margin=20)
    pdf.add_page()
    for line in text.splitlines():
        if line.startswith("## ") and line[3] in "35":  # sections 3 and 5 start a new page
            pdf.add_page()
        if line.startswith("# "):
            pdf.set_font("Helvetica", "B", 16)
            pdf.multi_cell(0, 9, line[2:], new_x="LMARGIN", new_y="NEXT")
            pdf.ln(3)
        elif line.startswith("## "):
            pdf.set_font("Helvetica", "B", 13)
            pdf.ln(2)
            pdf.multi_cell(0, 8, line[3:], new_x="LMARGIN", new_y="NEXT")
        elif line.strip():
            pdf.set_font("Helvetica", "", 11)
            pdf.multi_cell(0, 6, line.replace("’", "'"), new_x="LMARGIN", new_y="NEXT")
            pdf.ln(2)
    pdf.output(str(DATA / "politique-teletravail.pdf"))


def make_docx() -> None:
    from docx import Document

    doc = Document()
    doc.core_properties.author = "sourcier (fictional document)"
    doc.add_heading("Travel Expense Policy - Harbor Analytics", 0)
    doc.add_paragraph("A fictional policy written for sourcier's sample documents. Effective 1 January 2025.")
    doc.add_heading("Booking travel", 1)
    doc.add_paragraph(
        "All business trips are booked through the travel desk at least 14 days before departure. "
        "Flights shorter than six hours are booked in economy class; longer flights may be booked in "
        "premium economy with the approval of a department head. Trains are preferred to flights for "
        "journeys under four hours."
    )
    doc.add_heading("Hotel and meals", 1)
    doc.add_paragraph(
        "Hotel costs are reimbursed up to the nightly caps in the table below, breakfast included. "
        "Meals are covered by a daily allowance of 45 euros in Europe and 60 US dollars in North America; "
        "alcohol is never reimbursed."
    )
    table = doc.add_table(rows=1, cols=2)
    table.rows[0].cells[0].text = "City"
    table.rows[0].cells[1].text = "Hotel cap per night"
    for city, cap in (
        ("Paris", "170 euros"),
        ("Berlin", "150 euros"),
        ("Lisbon", "130 euros"),
        ("New York", "280 US dollars"),
        ("Any other city", "120 euros"),
    ):
        row = table.add_row().cells
        row[0].text, row[1].text = city, cap
    doc.add_heading("Claiming expenses", 1)
    doc.add_paragraph(
        "Expense claims are submitted in the expense tool within 30 days of the end of the trip, with an "
        "itemised receipt for every amount above 10 euros. Claims submitted later than 90 days are refused. "
        "Reimbursements are paid with the next monthly salary."
    )
    doc.save(str(DATA / "travel-expenses.docx"))


if __name__ == "__main__":
    make_pdf()
    make_docx()
