"""Scanned documents made in the test: a text page rendered to an image, and a PDF built from images only
(no text layer), the way a scanner or a phone writes them."""

from __future__ import annotations

import io
from pathlib import Path

from devkit import SAMPLE_DATA

ENGLISH_LINES = [
    "Harbour Authority - Crane Inspection Report",
    "",
    "The north crane was inspected on 14 March 2025 by Ingrid Solberg.",
    "Its maximum safe load is 42 tonnes after the new brake was fitted.",
    "The next inspection is due in September, before the winter storms.",
]


def rendered_pdf_page(pdf: Path = SAMPLE_DATA / "politique-teletravail.pdf", number: int = 1, dpi: int = 200):
    """A page of a PDF as a grayscale image, as a scanner would see it."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    try:
        return doc[number - 1].render(scale=dpi / 72, grayscale=True).to_pil()
    finally:
        doc.close()


def text_page_image(lines: list[str] = ENGLISH_LINES, dpi: int = 200):
    """An A4 page image holding ``lines`` in Pillow's own font (no system font needed)."""
    from PIL import Image, ImageDraw, ImageFont

    width, height = int(8.27 * dpi), int(11.69 * dpi)
    image = Image.new("L", (width, height), 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=dpi * 16 // 100)
    y = dpi
    for line in lines:
        draw.text((dpi, y), line, fill=0, font=font)
        y += dpi * 3 // 10
    return image


def scanned_pdf(images: list, dpi: int = 200) -> bytes:
    """A PDF whose pages are the images only: no text layer."""
    out = io.BytesIO()
    first, *rest = [im.convert("RGB") for im in images]
    first.save(out, format="PDF", save_all=True, append_images=rest, resolution=dpi)
    return out.getvalue()


def words_found(expected: str, got: str) -> float:
    """Share of the words of 4+ letters of ``expected`` that ``got`` holds."""
    words = [w.strip(".,;:()«»'’") for w in expected.split() if len(w) > 3]
    return sum(w in got for w in words) / max(1, len(words))
