"""Reading pages that have no text layer (scans, photos of pages) with Tesseract, fully offline.

A PDF page is read by OCR when its text layer holds fewer than ``min_chars`` letters and digits (none, or
a stamp like "CONFIDENTIAL - page 3") while images cover at least ``IMAGE_COVER`` of it: measured on the
3,482 pages of the FinanceBench filings, no born-digital page matches (their short pages hold no image,
their pages with images hold 680+ letters), so OCR costs nothing on documents that do not need it.
Pages are rendered with pypdfium2 and read by the ``tesseract`` program (Debian ``tesseract-ocr`` with
``tesseract-ocr-fra`` / ``-eng``): the image goes through a pipe, nothing is written to disk.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.errors import DocumentError

IMAGE_COVER = 0.5  # share of the page's area covered by images for a page to count as scanned
INSTALL_HINT = "install tesseract-ocr (and tesseract-ocr-fra / -eng) to read scanned pages"


@dataclass(frozen=True)
class OcrOptions:
    """How pages without text are read (plain values: it crosses a process boundary)."""

    enabled: bool = True
    languages: str = "fra+eng"
    min_chars: int = 200
    dpi: int = 300
    timeout_s: float = 300.0


@dataclass
class OcrResult:
    """Text read from page images, by page number, and the seconds it took."""

    texts: dict[int, str]
    seconds: float = 0.0


def tesseract_program() -> str | None:
    """The ``tesseract`` executable, or None when it is not installed."""
    return shutil.which("tesseract")


def text_layer_is_thin(text: str, options: OcrOptions) -> bool:
    """True when a page's text layer is too short to be its content (see the module's rule)."""
    return sum(ch.isalnum() for ch in text) < options.min_chars


def image_cover(page: Any) -> float:
    """Share of a pypdfium2 page's area covered by image objects (summed, at most 1)."""
    import pypdfium2.raw as pdfium_c

    width, height = page.get_size()
    area = 0.0
    for image in page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE], max_depth=3):
        left, bottom, right, top = image.get_bounds()
        area += max(0.0, right - left) * max(0.0, top - bottom)
    return min(1.0, area / (width * height)) if width and height else 0.0


def ocr_pdf_pages(
    path: Path, candidates: list[int], options: OcrOptions, tick: Callable[[], None] = lambda: None
) -> OcrResult:
    """OCR of the ``candidates`` pages (numbered from 1) that are scans; {} when OCR is off or none is.

    Raises DocumentError when a page is a scan but Tesseract is missing or fails on it; ``tick()`` is called
    before each page (it raises when the file's time is up).
    """
    if not options.enabled or not candidates:
        return OcrResult({})
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError:  # pypdf read it: keep its text, without OCR
        return OcrResult({})
    try:
        scans = [n for n in candidates if 0 < n <= len(pdf) and image_cover(pdf[n - 1]) >= IMAGE_COVER]
        if not scans:
            return OcrResult({})
        program = _program_or_error()
        started = time.perf_counter()
        texts = {}
        for n in scans:
            tick()
            image = pdf[n - 1].render(scale=options.dpi / 72, grayscale=True).to_pil()
            texts[n] = ocr_image(image, options, program, where=f"page {n}")
        return OcrResult(texts, time.perf_counter() - started)
    finally:
        pdf.close()


def read_image_pages(
    path: Path,
    options: OcrOptions,
    tick: Callable[[], None] = lambda: None,
    max_pages: Callable[[int], None] = lambda _: None,
) -> OcrResult:
    """OCR of an image file (every frame of a multi-page TIFF), pages numbered from 1; ``max_pages(n)`` may
    refuse a file of n frames, ``tick()`` is called before each."""
    from PIL import Image, ImageSequence, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            max_pages(getattr(img, "n_frames", 1))  # before any frame is decoded
            frames = [frame.convert("L") for frame in ImageSequence.Iterator(img)]
    except Image.DecompressionBombError:
        raise DocumentError("image too large to read (more than Pillow's limit of pixels)") from None
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DocumentError(f"not a readable image: {exc}") from None
    if not options.enabled:
        raise DocumentError("an image, and OCR is off (ingest.ocr = false)")
    program = _program_or_error()
    started = time.perf_counter()
    texts = {}
    for i, frame in enumerate(frames):
        tick()
        texts[i + 1] = ocr_image(frame, options, program, where=f"page {i + 1}")
    return OcrResult(texts, time.perf_counter() - started)


def ocr_image(image: Any, options: OcrOptions, program: str, where: str = "image") -> str:
    """The text Tesseract reads in a PIL image."""
    return run_tesseract(image, options, program, where)


def run_tesseract(image: Any, options: OcrOptions, program: str, where: str, *output: str) -> str:
    """Tesseract's output for a PIL image sent as PNG through a pipe (text, or ``output`` such as "tsv")."""
    png = io.BytesIO()
    image.save(png, format="PNG")
    # One thread: Tesseract's OpenMP threads made a page 8x slower on 2 cores (1.0 s -> 8.8 s at 300 dpi);
    # parallelism comes from reading several files at once.
    env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
    try:
        done = subprocess.run(
            [program, "stdin", "stdout", "-l", options.languages, "--psm", "3", *output],
            input=png.getvalue(),
            capture_output=True,
            timeout=options.timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise DocumentError(f"OCR of {where} took more than {options.timeout_s:g} s") from None
    if done.returncode != 0:
        raise DocumentError(f"OCR of {where} failed: {_tesseract_error(done.stderr, options.languages)}")
    return done.stdout.decode("utf-8", "replace")


def _program_or_error() -> str:
    program = tesseract_program()
    if program is None:
        raise DocumentError(f"no text layer: {INSTALL_HINT}")
    return program


def _tesseract_error(stderr: bytes, languages: str) -> str:
    message = stderr.decode("utf-8", "replace").strip()
    if "Failed loading language" in message or "Error opening data file" in message:
        packages = ", ".join(f"tesseract-ocr-{lang}" for lang in languages.split("+"))
        return f"Tesseract lacks the language data for '{languages}' (install {packages})"
    return message.splitlines()[-1] if message else "tesseract exited with an error"
