"""What reading one file may cost: its unpacked size, pages, paragraphs, characters and seconds.

A 125 KB Word file can unpack to 30 MB of XML holding 800,000 paragraphs, which python-docx reads at about
1.4 ms each: 15 minutes of two cores and the ingest's lock held the whole time. A zip-based file is checked
from its zip directory before anything is inflated (the total it unpacks to, and how much each member
grows: a decompression bomb grows hundreds of times, real documents ten or twenty); the readers then count
pages, paragraphs and characters as they go and stop at the first one over its budget, and every reader
checks the clock between pages or paragraphs. A file over a budget is refused with the budget's name
(a ``DocumentError``: the ingest reports it and goes on), never read to the end.
"""

from __future__ import annotations

import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import DocumentError
from rag.settings import IngestSettings

MB = 2**20
# A member smaller than this may grow as much as it likes (a small XML part of repeated markup can inflate
# 100x and more without costing anything).
RATIO_FLOOR_MB = 1.0


def _default(name: str) -> Any:
    return IngestSettings.model_fields[name].default  # one place for each default: the setting's


@dataclass(frozen=True)
class ReadLimits:
    """The budgets of one file (plain values: they cross a process boundary with the file's job); by default
    those of ``ingest.max_*``."""

    max_unpacked_mb: float = _default("max_unpacked_mb")
    max_unpack_ratio: float = _default("max_unpack_ratio")
    max_pages: int = _default("max_pages")
    max_paragraphs: int = _default("max_paragraphs")
    max_characters: int = _default("max_characters")
    max_page_content_mb: float = _default("max_page_content_mb")
    max_seconds: float = _default("max_read_seconds")


@dataclass
class Budget:
    """One file's reading against its limits: ``pages``/``paragraphs``/``characters`` are added as they are
    read, and each addition checks them and the clock."""

    limits: ReadLimits = field(default_factory=ReadLimits)
    started: float = field(default_factory=time.monotonic)
    characters: int = 0

    def check_time(self) -> None:
        spent = time.monotonic() - self.started
        if spent > self.limits.max_seconds:
            raise DocumentError(
                f"took longer than {self.limits.max_seconds:g} s to read (stopped after {spent:.0f} s; "
                "ingest.max_read_seconds)"
            )

    def pages(self, count: int) -> None:
        if count > self.limits.max_pages:
            raise DocumentError(f"{count:,} pages, above the limit of {self.limits.max_pages:,} (ingest.max_pages)")

    def paragraphs(self, count: int) -> None:
        if count > self.limits.max_paragraphs:
            raise DocumentError(
                f"{count:,} paragraphs, above the limit of {self.limits.max_paragraphs:,} (ingest.max_paragraphs)"
            )

    def page_content(self, size: int) -> None:
        """A PDF page's drawing commands (its decoded content stream), ``size`` bytes, before they are read."""
        if size > self.limits.max_page_content_mb * MB:
            raise DocumentError(
                f"a page holds {size / MB:,.0f} MB of drawing commands, above the limit of "
                f"{self.limits.max_page_content_mb:g} MB (ingest.max_page_content_mb)"
            )

    def text(self, text: str) -> str:
        """Counts ``text`` (a page, a paragraph) and the time; returns it."""
        self.characters += len(text)
        if self.characters > self.limits.max_characters:
            raise DocumentError(f"more than {self.limits.max_characters:,} characters of text (ingest.max_characters)")
        self.check_time()
        return text


def check_zip(path: Path, limits: ReadLimits, what: str = "zip-based file") -> None:
    """Refuses a zip-based file (Word .docx) that would unpack past the limits, from its directory alone."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DocumentError(f"not a readable {what}: {exc}") from None
    total = sum(m.file_size for m in members)
    if total > limits.max_unpacked_mb * MB:
        raise DocumentError(
            f"too large when unpacked: {total / MB:,.0f} MB, above the limit of {limits.max_unpacked_mb:g} MB "
            "(ingest.max_unpacked_mb)"
        )
    for m in members:
        ratio = m.file_size / max(m.compress_size, 1)
        if m.file_size > RATIO_FLOOR_MB * MB and ratio > limits.max_unpack_ratio:
            raise DocumentError(
                f"{m.filename} unpacks to {m.file_size / MB:,.1f} MB from {m.compress_size / 1024:,.0f} KB "
                f"({ratio:,.0f} times larger, above {limits.max_unpack_ratio:g}: a decompression bomb?; "
                "ingest.max_unpack_ratio)"
            )


def read_limits(settings: IngestSettings) -> ReadLimits:
    """The budgets the settings give each file."""
    return ReadLimits(
        max_unpacked_mb=settings.max_unpacked_mb,
        max_unpack_ratio=settings.max_unpack_ratio,
        max_pages=settings.max_pages,
        max_paragraphs=settings.max_paragraphs,
        max_characters=settings.max_characters,
        max_page_content_mb=settings.max_page_content_mb,
        max_seconds=settings.max_read_seconds,
    )
