"""The cited page, shown: a PDF page (or an image file) rendered with the cited passage highlighted.

The passage is found on the page by its letters and digits only (case, accents' composition, spaces,
punctuation and the collapsed dot leaders of tables all differ between the stored text and the page's
own characters), in the PDF's text layer, or in Tesseract's word boxes on a scanned page. When the whole
passage is not found (another extraction split a word differently), its first and last 40 characters
bound it; when neither is found the page is shown without a highlight, and says so. Rendered pages are
cached on disk, keyed by the file's size and modification time, the page, the passage and the resolution.
"""

from __future__ import annotations

import hashlib
import io
import os
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.ocr import OcrOptions, run_tesseract, tesseract_program
from rag.errors import DocumentError

HIGHLIGHT = (255, 214, 0, 110)  # translucent yellow over the passage
OUTLINE = (230, 120, 0, 255)
ANCHOR = 40  # characters of the passage's start and end searched when the whole is not found
DEFAULT_DPI = 110
PAGE_KINDS = ("pdf", "image")  # the document kinds whose pages can be shown as images


@dataclass(frozen=True)
class PageView:
    """A rendered page: PNG bytes, and how many boxes mark the passage (0: not located on the page)."""

    png: bytes
    boxes: int
    width: int
    height: int


Box = tuple[float, float, float, float]  # left, top, right, bottom in the image's pixels


def render_page(path: Path, kind: str, number: int, passage: str | None, dpi: int = DEFAULT_DPI) -> PageView:
    """Page ``number`` (from 1) of a PDF or image file, with ``passage`` highlighted when found on it."""
    if kind == "pdf":
        image, boxes = _pdf_page(path, number, passage, dpi)
    elif kind == "image":
        image, boxes = _image_page(path, number, passage)
    else:
        raise DocumentError(f"{path.name}: page images exist for PDF and image files only, not {kind}")
    return _drawn(image, boxes)


class PageCache:
    """Rendered pages in a folder (at most ``max_files``, the least recently shown removed first)."""

    def __init__(self, folder: Path, max_files: int = 400) -> None:
        self.folder = Path(folder)
        self.max_files = max_files

    def view(self, path: Path, kind: str, number: int, passage: str | None, dpi: int = DEFAULT_DPI) -> PageView:
        """The page from the cache, or rendered (and kept) when the file changed or it was never shown."""
        try:
            st = path.stat()
        except OSError as exc:
            raise DocumentError(f"{path.name}: cannot read file: {exc.strerror or exc}") from None
        parts = [str(path), str(st.st_size), str(st.st_mtime_ns), str(number), passage or "", str(dpi)]
        key = hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest()[:40]
        cached = self._cached(key)
        if cached is not None:
            return cached
        view = render_page(path, kind, number, passage, dpi)
        self._store(self.folder / f"{key}-{view.boxes}.png", view.png)
        return view

    def _cached(self, key: str) -> PageView | None:
        """The kept rendering of ``key`` (its use refreshes its date: the least recently shown go first)."""
        from PIL import Image

        for hit in self.folder.glob(f"{key}-*.png"):
            try:
                png = hit.read_bytes()
                boxes = int(hit.stem.rsplit("-", 1)[1])
                os.utime(hit)
                with Image.open(io.BytesIO(png)) as im:
                    return PageView(png, boxes, im.width, im.height)
            except (OSError, ValueError):  # removed meanwhile, or not ours: render again
                return None
        return None

    def _store(self, target: Path, png: bytes) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(png)
            tmp.replace(target)
            files = sorted(self.folder.glob("*.png"), key=lambda p: p.stat().st_mtime)
            for old in files[: max(0, len(files) - self.max_files)]:
                old.unlink(missing_ok=True)
        except OSError:  # a cache that cannot be written only costs the next render
            pass


# -- PDF pages ---------------------------------------------------------------------------------------------


def _pdf_page(path: Path, number: int, passage: str | None, dpi: int) -> tuple[Any, list[Box]]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise DocumentError(f"{path.name}: cannot open the PDF to show its page: {exc}") from None
    try:
        if not 1 <= number <= len(pdf):
            raise DocumentError(f"{path.name} has {len(pdf)} pages, not a page {number}")
        page = pdf[number - 1]
        scale = dpi / 72
        image = page.render(scale=scale).to_pil().convert("RGB")
        if not passage:
            return image, []
        boxes = _text_layer_boxes(page, passage, scale)
        if not boxes:  # no text layer holds it: a scanned page, read again by OCR for the words' places
            boxes = _ocr_boxes(image, passage)
        return image, boxes
    finally:
        pdf.close()


def _text_layer_boxes(page: Any, passage: str, scale: float) -> list[Box]:
    textpage = page.get_textpage()
    count = textpage.count_chars()
    if count <= 0 or page.get_rotation() % 360:
        return []
    full = textpage.get_text_range()
    chars = list(full) if len(full) == count else [textpage.get_text_range(i, 1) for i in range(count)]
    found = locate(chars, passage)
    if found is None:
        return []
    first, last = found
    left, _, _, top = page.get_bbox()  # what is rendered: the crop box within the media box
    boxes = []
    for i in range(textpage.count_rects(first, last - first + 1)):
        x0, y0, x1, y1 = textpage.get_rect(i)
        boxes.append(((x0 - left) * scale, (top - y1) * scale, (x1 - left) * scale, (top - y0) * scale))
    return merged_lines(boxes)


def merged_lines(boxes: list[Box]) -> list[Box]:
    """Boxes of one line joined into one (PDFs that place each word or character alone give hundreds of
    rectangles for a table passage): same line when they overlap vertically by half, joined across gaps up
    to twice the line's height (the columns of a table row stay one band)."""
    out: list[Box] = []
    for box in boxes:
        if out:
            x0, y0, x1, y1 = out[-1]
            height = min(y1 - y0, box[3] - box[1]) or 1.0
            overlap = min(y1, box[3]) - max(y0, box[1])
            if overlap >= height / 2 and box[0] - x1 <= 2 * height and box[2] >= x0:
                out[-1] = (min(x0, box[0]), min(y0, box[1]), max(x1, box[2]), max(y1, box[3]))
                continue
        out.append(box)
    return out


# -- scanned pages and image files -------------------------------------------------------------------------


def _image_page(path: Path, number: int, passage: str | None) -> tuple[Any, list[Box]]:
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            frames = list(ImageSequence.Iterator(img))
            if not 1 <= number <= len(frames):
                raise DocumentError(f"{path.name} has {len(frames)} pages, not a page {number}")
            image = frames[number - 1].convert("RGB")
    except (UnidentifiedImageError, OSError) as exc:
        raise DocumentError(f"{path.name}: not a readable image: {exc}") from None
    return image, _ocr_boxes(image, passage) if passage else []


def _ocr_boxes(image: Any, passage: str) -> list[Box]:
    """Where Tesseract reads the passage's words on the image, one box per line of text ([] without it)."""
    program = tesseract_program()
    if program is None:
        return []
    try:
        words = _tsv_words(run_tesseract(image.convert("L"), OcrOptions(), program, "the page", "tsv"))
    except DocumentError:
        return []
    found = locate([w[0] + " " for w in words], passage)
    if found is None:
        return []
    lines: dict[tuple[str, str, str], Box] = {}
    for _word, line, (x0, y0, x1, y1) in words[found[0] : found[1] + 1]:
        a = lines.get(line)
        lines[line] = (x0, y0, x1, y1) if a is None else (min(a[0], x0), min(a[1], y0), max(a[2], x1), max(a[3], y1))
    return list(lines.values())


def _tsv_words(tsv: str) -> list[tuple[str, tuple[str, str, str], Box]]:
    """(word, its line's key, its box) for each word of Tesseract's TSV output."""
    words = []
    for row in tsv.splitlines()[1:]:
        cols = row.split("\t")
        if len(cols) < 12 or cols[0] != "5" or not cols[11].strip():
            continue
        left, top, width, height = (float(c) for c in cols[6:10])
        words.append((cols[11], (cols[2], cols[3], cols[4]), (left, top, left + width, top + height)))
    return words


# -- finding the passage ------------------------------------------------------------------------------------


def folded(text: str) -> str:
    """Letters and digits only, case-folded and compatibility-composed: what two extractions agree on."""
    return "".join(c for c in unicodedata.normalize("NFKC", text).casefold() if c.isalnum())


def locate(units: list[str], passage: str) -> tuple[int, int] | None:
    """The first and last index of ``units`` (characters or words of the page, in reading order) that hold
    ``passage``; None when it is not on the page."""
    target = folded(passage)
    if not target:
        return None
    letters: list[str] = []
    owner: list[int] = []
    for i, unit in enumerate(units):
        for c in folded(unit):
            letters.append(c)
            owner.append(i)
    page = "".join(letters)
    at = page.find(target)
    if at >= 0:
        return owner[at], owner[at + len(target) - 1]
    if len(target) <= 2 * ANCHOR:
        return None
    head, tail = target[:ANCHOR], target[-ANCHOR:]
    start = page.find(head)
    end = page.find(tail, start + ANCHOR) if start >= 0 else -1
    if start < 0 or end < 0 or end - start > 3 * len(target):
        return None
    return owner[start], owner[end + ANCHOR - 1]


def _drawn(image: Any, boxes: list[Box]) -> PageView:
    from PIL import Image, ImageDraw

    if boxes:
        overlay = Image.new("RGBA", image.size, (0, 0, 0, 0))
        draw = ImageDraw.Draw(overlay)
        for x0, y0, x1, y1 in boxes:
            draw.rectangle((x0 - 2, y0 - 2, x1 + 2, y1 + 2), fill=HIGHLIGHT, outline=OUTLINE, width=2)
        image = Image.alpha_composite(image.convert("RGBA"), overlay).convert("RGB")
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=False)
    return PageView(out.getvalue(), len(boxes), image.width, image.height)
