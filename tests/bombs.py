"""Hostile files built on the spot (issue 38): Word files that unpack huge, PDFs with too many pages or a huge
content stream. Nothing is stored in the repository: each is a few lines of zipfile/zlib."""

from __future__ import annotations

import io
import zipfile
import zlib
from pathlib import Path

PARAGRAPH = "<w:p><w:r><w:t>bomb</w:t></w:r></w:p>"
_W = 'xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main"'


def small_docx(paragraphs: list[str]) -> bytes:
    """A real Word file (python-docx) with these paragraphs."""
    from docx import Document

    doc = Document()
    for text in paragraphs:
        doc.add_paragraph(text)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def docx_with_body(body_xml: bytes, extra: dict[str, bytes] | None = None) -> bytes:
    """A real Word file whose ``word/document.xml`` is replaced by ``body_xml`` (zip level 9), plus ``extra``
    members stored as they are."""
    source = zipfile.ZipFile(io.BytesIO(small_docx(["placeholder"])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for item in source.infolist():
            data = body_xml if item.filename == "word/document.xml" else source.read(item.filename)
            target.writestr(item.filename, data)
        for name, data in (extra or {}).items():
            target.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_STORED)
    return out.getvalue()


def bomb_docx(mb: float = 30) -> bytes:
    """The issue's bomb: ``mb`` MB of ``<w:p><w:r><w:t>bomb</w:t></w:r></w:p>`` in document.xml (about 125 KB
    zipped for 30 MB)."""
    count = int(mb * 2**20 / len(PARAGRAPH))
    body = f'<?xml version="1.0"?><w:document {_W}><w:body>{PARAGRAPH * count}</w:body></w:document>'
    return docx_with_body(body.encode())


def many_members_docx(members: int, member_kb: int) -> bytes:
    """A Word file with many parts, each under the ratio check's floor, together unpacking huge."""
    source = zipfile.ZipFile(io.BytesIO(small_docx(["a real paragraph of the document."])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as target:
        for item in source.infolist():
            target.writestr(item.filename, source.read(item.filename))
        for i in range(members):
            target.writestr(f"customXml/bulk{i}.xml", b" " * (member_kb * 1024))
    return out.getvalue()


def pdf(pages: list[bytes]) -> bytes:
    """A PDF whose pages have these content streams (each Flate-compressed), built object by object."""
    count = len(pages)
    objects: list[bytes] = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(count))
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {count} >>".encode())
    font = 3 + 2 * count
    for i, content in enumerate(pages):
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents {4 + 2 * i} 0 R "
            f"/Resources << /Font << /F1 {font} 0 R >> >> >>".encode()
        )
        packed = zlib.compress(content, 9)
        objects.append(b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed) + packed + b"\nendstream")
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n" % number + body + b"\nendobj\n")
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()


def text_page(text: str) -> bytes:
    return f"BT /F1 12 Tf 72 720 Td ({text}) Tj ET".encode()


def slow_pdf(path: Path, mb: int = 4) -> Path:
    """13 KB, a page of 4 MB of text commands: one pypdf call of about 6 s here (6 MB: 8-10 s), which a
    reader's budget checks only once it is over (between pages)."""
    shown = b"BT /F1 12 Tf 72 720 Td (word) Tj ET\n"
    return write(path, pdf([text_page("A first page of real text."), shown * (mb * 2**20 // len(shown))]))


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path
