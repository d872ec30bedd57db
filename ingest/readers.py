"""Turn one file into pages of text, or raise a DocumentError that says why it cannot be read."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.errors import DocumentError

# Share of control characters above which a "text" file is taken for binary content.
_BINARY_CONTROL_SHARE = 0.05
_ALLOWED_CONTROLS = {"\n", "\r", "\t", "\f", "\v"}


@dataclass(frozen=True)
class Page:
    """Text of one page (PDF pages count from 1; formats without pages use 0)."""

    number: int
    text: str


def read_document(path: Path, kind: str) -> list[Page]:
    """Pages with text of one file; raises DocumentError when nothing usable comes out."""
    reader = _READERS[kind]
    try:
        pages = reader(path)
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
    pages = [Page(p.number, _clean(p.text)) for p in pages]
    pages = [p for p in pages if p.text.strip()]
    if not pages:
        if kind == "pdf":
            raise DocumentError("no extractable text (a scanned PDF? run OCR on it first)")
        raise DocumentError("no text in the document")
    return pages


def _clean(text: str) -> str:
    return text.replace("\x00", "").replace("\r\n", "\n")


def read_pdf(path: Path) -> list[Page]:
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
        return [Page(i + 1, page.extract_text() or "") for i, page in enumerate(reader.pages)]
    except DocumentError:
        raise
    except FileNotDecryptedError:
        raise DocumentError("PDF is encrypted and needs a password") from None
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, IndexError, RecursionError) as exc:
        raise DocumentError(f"not a readable PDF (corrupt or truncated): {_short(exc)}") from None


def read_text(path: Path) -> list[Page]:
    return [Page(0, _decode_text(path))]


def read_html(path: Path) -> list[Page]:
    from bs4 import BeautifulSoup

    html = _decode_text(path)
    soup = BeautifulSoup(html, "html.parser")
    for tag in soup(["script", "style", "noscript", "template"]):
        tag.decompose()
    text = soup.get_text("\n")
    lines = [line.strip() for line in text.splitlines()]
    return [Page(0, "\n".join(line for line in lines if line))]


def read_docx(path: Path) -> list[Page]:
    import zipfile

    from docx import Document
    from docx.opc.exceptions import PackageNotFoundError

    _refuse_empty(path)
    try:
        doc = Document(str(path))
    except (PackageNotFoundError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise DocumentError(f"not a readable Word .docx file: {_short(exc)}") from None
    parts = [p.text for p in doc.paragraphs if p.text.strip()]
    for table in doc.tables:
        for row in table.rows:
            cells = [c.text.strip() for c in row.cells if c.text.strip()]
            if cells:
                parts.append(" | ".join(cells))
    return [Page(0, "\n\n".join(parts))]


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


_READERS: dict[str, Callable[[Path], list[Page]]] = {
    "pdf": read_pdf,
    "text": read_text,
    "markdown": read_text,
    "html": read_html,
    "docx": read_docx,
}
