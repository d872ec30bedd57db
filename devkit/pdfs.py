"""PDFs written from text, for tests and benchmarks that need real pages without a PDF library to make them."""

from __future__ import annotations


def text_pdf(pages: list[str]) -> bytes:
    """A PDF with one page per text (Helvetica, WinAnsi: French accents survive pypdf's extraction)."""
    objects: list[bytes] = []
    kids = []
    for text in pages:
        lines = []
        for paragraph in text.split("\n"):
            words, line = paragraph.split(), ""
            for word in words:
                if len(line) + len(word) > 95:
                    lines.append(line)
                    line = word
                else:
                    line = f"{line} {word}".strip()
            lines.append(line)
        body = "".join(f"({_pdf_string(line)}) '\n" for line in lines[:64])
        stream = f"BT /F1 9 Tf 40 800 Td 12 TL\n{body}ET".encode("latin-1", "replace")
        objects.append(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        content = len(objects) + 2  # objects 1 and 2 are the catalog and the page tree
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (content, 3 + 2 * len(pages)))  # fmt: skip
        kids.append(len(objects) + 2)
    tree = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    head = [b"<< /Type /Catalog /Pages 2 0 R >>", tree]
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    everything = [*head, *objects, font]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(everything, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % i + obj + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(everything) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(everything) + 1, xref)
    return bytes(out)


def _pdf_string(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
