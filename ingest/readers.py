"""Turn one file into pages of text, or raise a DocumentError that says why it cannot be read."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ingest.limits import Budget, ReadLimits, check_zip
from ingest.ocr import INSTALL_HINT, OcrOptions, ocr_pdf_pages, read_image_pages, tesseract_program, text_layer_is_thin
from rag.errors import DocumentError

# Share of control characters above which a "text" file is taken for binary content.
_BINARY_CONTROL_SHARE = 0.05
_ALLOWED_CONTROLS = {"\n", "\r", "\t", "\f", "\v"}


@dataclass(frozen=True)
class Page:
    """Text of one page (PDF pages count from 1; formats without pages use 0).

    ``headings`` are the section headings that begin on this page, as (character offset, heading), in order;
    readers give 0 and ``read_document`` finds each heading's line in the cleaned text.
    """

    number: int
    text: str
    headings: tuple[tuple[int, str], ...] = ()
    ocr: bool = False  # the text was read from the page's image


@dataclass(frozen=True)
class DocumentText:
    """What a reader got out of one file: its pages, and its title when the file states one."""

    pages: list[Page]
    title: str = ""
    ocr_seconds: float = 0.0


def read_document(
    path: Path, kind: str, ocr: OcrOptions | None = None, limits: ReadLimits | None = None
) -> DocumentText:
    """Pages with text of one file (and its title); raises DocumentError when nothing usable comes out, or
    when reading it would pass one of its ``limits`` (unpacked size, pages, paragraphs, characters, time).

    Scanned PDF pages and image files are read by OCR as ``ocr`` says (default options when None).
    """
    ocr = ocr or OcrOptions()
    budget = Budget(limits or ReadLimits())
    try:
        scannable = _READ_SCANNABLE.get(kind)
        read = scannable(path, ocr, budget) if scannable else _READERS[kind](path, budget)
    except DocumentError:
        raise
    except MemoryError:
        raise DocumentError("file too large to read in memory") from None
    except PermissionError:
        raise DocumentError("permission denied") from None
    except IsADirectoryError:
        raise DocumentError("is a folder, not a file") from None
    except OSError as exc:
        raise DocumentError(f"cannot read file: {exc.strerror or exc}") from None
    pages = [_cleaned(p) for p in read.pages]
    pages = [p for p in pages if p.text.strip()]
    if not pages:
        raise DocumentError(_why_no_text(kind, ocr))
    return DocumentText(pages, meaningful_title(read.title), read.ocr_seconds)


def _why_no_text(kind: str, ocr: OcrOptions) -> str:
    if kind not in _READ_SCANNABLE:
        return "no text in the document"
    if not ocr.enabled:
        return "no extractable text, and OCR is off (ingest.ocr = false)"
    if tesseract_program() is None:
        return f"no extractable text (no text layer: {INSTALL_HINT})"
    return "no extractable text (blank pages, or OCR found no words)"


# Dot leaders of tables of contents and financial statements ("Total assets ........ $ 11,726,472"): 21% of
# the tokens of the FinanceBench evidence pages (the tokenizer makes each dot a token), and 2% of their table
# rows (22 of 1,105) longer than a chunk, so cut in two with the label apart from its numbers. One "…" keeps
# every row whole and its label a few tokens from its numbers.
_LEADER = re.compile(r"(?:[ \t]*\.){4,}[ \t]*")


def clean_text(text: str) -> str:
    return _LEADER.sub(" … ", text.replace("\x00", "").replace("\r\n", "\n"))


def _cleaned(page: Page) -> Page:
    """The page with its text cleaned and its headings found again in the cleaned text (offsets move)."""
    text = clean_text(page.text)
    return Page(page.number, text, locate_headings(text, [h for _, h in page.headings]), page.ocr)


def locate_headings(text: str, headings: list[str]) -> tuple[tuple[int, str], ...]:
    """(offset of its line, heading) for each heading, searched in order in ``text``; one not found is put
    where the previous one is (the page's start for the first)."""
    located, cursor = [], 0
    for heading in headings:
        heading = " ".join(heading.split())
        if not heading:
            continue
        found = text.find(heading, cursor)
        # a heading starts its line ("# Title", "1.2 Title"); one not found goes where the previous one is
        at = text.rfind("\n", 0, found) + 1 if found >= 0 else (cursor if located else 0)
        located.append((at, heading[:_MAX_HEADING_CHARS]))
        cursor = at
    return tuple(located)


_MAX_HEADING_CHARS = 160
# Titles that tools write by default and that say nothing about the document.
_PLACEHOLDER_TITLE = re.compile(r"^(untitled|sans titre|document\s*\d*|title|titre|new document|slide \d+)$", re.I)


def meaningful_title(title: str | None) -> str:
    """``title`` when it names the document in words; "" for placeholders and identifiers (accession
    numbers, "Document1", "Microsoft Word - x.docx")."""
    t = " ".join(str(title or "").split())
    t = re.sub(r"^microsoft (word|powerpoint|excel) - ", "", t, flags=re.I)
    t = re.sub(r"\.(docx?|pdf|odt|rtf|txt|pptx?)$", "", t, flags=re.I)
    letters = sum(ch.isalpha() for ch in t)
    if letters < 3 or letters < sum(ch.isdigit() for ch in t) or _PLACEHOLDER_TITLE.match(t):
        return ""
    return t[:_MAX_HEADING_CHARS]


def read_pdf(path: Path, ocr: OcrOptions | None = None, budget: Budget | None = None) -> DocumentText:
    """The text layer of every page; pages that are scans are read by OCR instead (see ``ingest.ocr``)."""
    budget = budget or Budget()
    document = _read_pdf_layer(path, budget)
    thin = [p.number for p in document.pages if text_layer_is_thin(p.text, ocr or OcrOptions())]
    if not thin or tesseract_program() is None:  # without Tesseract, the pages with text still go in
        return document
    read = ocr_pdf_pages(path, thin, ocr or OcrOptions(), tick=budget.check_time)
    pages = [
        Page(p.number, read.texts[p.number], p.headings, ocr=True) if p.number in read.texts else p
        for p in document.pages
    ]
    return DocumentText(pages, document.title, read.seconds)


def read_image(path: Path, ocr: OcrOptions | None = None, budget: Budget | None = None) -> DocumentText:
    """An image of a page (PNG, JPEG, TIFF with one page per frame), read by OCR."""
    budget = budget or Budget()
    _refuse_empty(path)
    read = read_image_pages(path, ocr or OcrOptions(), tick=budget.check_time, max_pages=budget.pages)
    return DocumentText([Page(n, text, ocr=True) for n, text in sorted(read.texts.items())], "", read.seconds)


def _read_pdf_layer(path: Path, budget: Budget) -> DocumentText:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, FileNotDecryptedError, PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    _refuse_empty(path)
    try:
        reader = PdfReader(str(path), strict=False)
        if reader.is_encrypted:
            try:
                ok = reader.decrypt("")
            except (DependencyError, NotImplementedError) as exc:
                raise DocumentError(f"encrypted PDF this installation cannot decrypt: {exc}") from None
            if not ok:
                raise DocumentError("PDF is encrypted and needs a password")
        budget.pages(len(reader.pages))
        outline = _pdf_outline(reader)
        pages = [
            Page(i + 1, budget.text(_page_text(page, budget)), tuple((0, h) for h in outline.get(i + 1, ())))
            for i, page in enumerate(reader.pages)
        ]
        return DocumentText(pages, _pdf_title(reader))
    except DocumentError:
        raise
    except FileNotDecryptedError:
        raise DocumentError("PDF is encrypted and needs a password") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise DocumentError(f"not a readable PDF (corrupt or truncated): {_short(exc)}") from None


def _page_text(page: Any, budget: Budget) -> str:
    """A page's text layer, unless its content stream is too large to be read in the time left (a page of
    real text holds well under a megabyte of drawing commands; pypdf reads them at about 1 MB/s)."""
    contents = page.get_contents()
    size = len(contents.get_data()) if contents is not None else 0
    budget.page_content(size)
    return page.extract_text() or ""


def _pdf_title(reader: Any) -> str:
    try:
        return str((reader.metadata or {}).get("/Title") or "")
    except Exception:  # a damaged info dictionary costs the title, not the document
        return ""


def _pdf_outline(reader: Any) -> dict[int, list[str]]:
    """Bookmark titles by the page (from 1) they point to, in outline order; {} when there are none."""
    found: dict[int, list[str]] = {}

    def walk(items: list) -> None:
        for item in items:
            if isinstance(item, list):
                walk(item)
                continue
            try:
                number = reader.get_destination_page_number(item)
            except Exception:
                continue
            if number is not None and number >= 0 and getattr(item, "title", None):
                found.setdefault(number + 1, []).append(str(item.title))

    try:
        walk(reader.outline)
    except Exception:  # a broken outline costs the section names, not the document
        return {}
    return found


def read_text(path: Path, budget: Budget | None = None) -> DocumentText:
    return DocumentText([Page(0, (budget or Budget()).text(_decode_text(path)))])


_MD_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)


def read_markdown(path: Path, budget: Budget | None = None) -> DocumentText:
    """Text as written; ``#`` headings are the sections, the first top-level one the title."""
    text = (budget or Budget()).text(_decode_text(path))
    found = [(len(m.group(1)), m.group(2).strip()) for m in _MD_HEADING.finditer(text)]
    top = [h for level, h in found if level == 1]
    title = top[0] if top else (found[0][1] if found else "")
    return DocumentText([Page(0, text, tuple((0, h) for _, h in found))], title)


def read_html(path: Path, budget: Budget | None = None) -> DocumentText:
    from bs4 import BeautifulSoup

    html = (budget or Budget()).text(_decode_text(path))
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    title = soup.title.get_text(" ", strip=True) if soup.title else ""
    headings = [h.get_text(" ", strip=True) for h in soup.find_all(["h1", "h2", "h3", "h4"])]
    text = soup.get_text("\n")
    lines = [line.strip() for line in text.splitlines()]
    body = "\n".join(line for line in lines if line)
    return DocumentText([Page(0, body, tuple((0, h) for h in headings))], title or (headings[0] if headings else ""))


def read_docx(path: Path, budget: Budget | None = None) -> DocumentText:
    """Paragraphs, then table rows (cells joined by " | "); the zip is checked before it is inflated, and
    paragraphs and characters are counted against the budget as they are read."""
    import zipfile

    from docx import Document
    from docx.opc.exceptions import PackageNotFoundError
    from docx.oxml.ns import qn

    budget = budget or Budget()
    _refuse_empty(path)
    check_zip(path, budget.limits, "Word .docx file")
    try:
        doc = Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"not a readable Word .docx file: {_short(exc)}") from None
    body = doc.element.body
    budget.paragraphs(sum(1 for _ in body.iter(qn("w:p"))))  # every paragraph, tables' included: lxml counts fast
    paragraphs = [(p, text) for p in doc.paragraphs if (text := budget.text(p.text)).strip()]
    parts = [text for _, text in paragraphs]
    headings = [text for p, text in paragraphs if _style_name(p).startswith(("heading", "title"))]
    for table in doc.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if budget.text(c.text).strip()]
            if cells:
                parts.append(" | ".join(cells))
    title = doc.core_properties.title or (headings[0] if headings else "")
    return DocumentText([Page(0, "\n\n".join(parts), tuple((0, h) for h in headings))], title)


def _style_name(paragraph: Any) -> str:
    try:
        return str(paragraph.style.name or "").lower()
    except Exception:  # a paragraph whose style the file does not define
        return ""


def _refuse_empty(path: Path) -> None:
    if path.stat().st_size == 0:
        raise DocumentError("empty file (0 bytes)")


def _decode_text(path: Path) -> str:
    """Decode a text file: UTF-8 first, else the detected encoding; refuse binary content."""
    data = path.read_bytes()
    if not data:
        raise DocumentError("empty file (0 bytes)")
    if b"\x00" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise DocumentError("binary content, not text (NUL bytes found)")
    try:
        utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
        text = data.decode("utf-16") if utf16 else data.decode("utf-8-sig")
    except UnicodeDecodeError:
        text = _decode_detected(data)
    controls = sum(1 for ch in text[:100_000] if ord(ch) < 32 and ch not in _ALLOWED_CONTROLS)
    if controls > _BINARY_CONTROL_SHARE * min(len(text), 100_000):
        raise DocumentError("binary content, not text (too many control characters)")
    return text


# Non-ASCII characters of Western European text; cp1252 output made mostly of these is trusted.
_WESTERN = set("àâäáãåçéèêëíìîïñóòôöõúùûüýÿæœßøÀÂÄÁÃÅÇÉÈÊËÍÌÎÏÑÓÒÔÖÕÚÙÛÜÝŸÆŒØ«»€’‘“”–—…°©®™·•§¿¡ºª\xa0")


def _decode_detected(data: bytes) -> str:
    """Legacy encodings: cp1252 (Windows/Latin-1 Western text) when plausible, else detection.

    Detectors cannot tell single-byte Latin encodings apart on short text (French Latin-1 comes out
    as Baltic cp1257); cp1252 is by far the most common of them, so it is tried first and kept when
    the accented characters it yields are Western European ones.
    """
    from charset_normalizer import from_bytes

    try:
        text = data.decode("cp1252")
    except UnicodeDecodeError:
        text = None
    if text is not None:
        accented = [ch for ch in text if ord(ch) > 127]
        if sum(ch not in _WESTERN for ch in accented) <= 0.05 * len(accented):
            return text
    best = from_bytes(data).best()
    if best is None:
        raise DocumentError("not UTF-8 text and its encoding could not be detected (binary content?)")
    return str(best)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


_READERS: dict[str, Callable[[Path, Budget], DocumentText]] = {
    "text": read_text,
    "markdown": read_markdown,
    "html": read_html,
    "docx": read_docx,
}
_READ_SCANNABLE: dict[str, Callable[[Path, OcrOptions, Budget], DocumentText]] = {"pdf": read_pdf, "image": read_image}
