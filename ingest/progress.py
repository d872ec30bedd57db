"""Terminal display of an ingest: a live progress bar, then a summary table."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from ingest.pipeline import IngestReport, ProgressListener


class RichProgress(ProgressListener):
    """Files, pages and chunks done, chunks/s and ETA (by bytes) on stderr."""

    def __init__(self, console: Console, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar = Progress(
            TextColumn("[bold]ingest[/]"),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            TextColumn("{task.fields[pages]} pages{task.fields[ocr]}"),
            TextColumn("{task.fields[chunks]} chunks"),
            TextColumn("{task.fields[rate]:.1f} chunks/s"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self._task = None
        self._files = self._total_files = self._pages = self._embedded = self._ocr_pages = 0

    def __enter__(self) -> RichProgress:
        if self.enabled:
            self._bar.start()
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        if self.enabled:
            self._bar.stop()

    def planned(self, files: int, total_bytes: int) -> None:
        self._total_files = files
        if self.enabled and files:
            self._task = self._bar.add_task("ingest", total=max(total_bytes, 1), **self._fields())

    def file_chunked(self, source: str, pages: int, chunks: int, ocr_pages: int = 0) -> None:
        self._pages += pages
        self._ocr_pages += ocr_pages
        self._update(0)

    def chunks_embedded(self, count: int) -> None:
        self._embedded += count
        self._update(0)

    def file_finished(self, source: str, nbytes: int) -> None:
        self._files += 1
        self._update(nbytes)

    def _fields(self) -> dict:
        elapsed = 0.0
        if self._task is not None:
            elapsed = self._bar.tasks[self._task].elapsed or 0.0
        return {
            "files": f"{self._files}/{self._total_files}",
            "pages": self._pages,
            "ocr": f" ({self._ocr_pages} by OCR)" if self._ocr_pages else "",
            "chunks": self._embedded,
            "rate": self._embedded / elapsed if elapsed > 0 else 0.0,
        }

    def _update(self, advance: int) -> None:
        if self.enabled and self._task is not None:
            self._bar.update(self._task, advance=advance, **self._fields())


def print_report(report: IngestReport, console: Console) -> None:
    """The summary table, then every failure and skipped file with its reason."""
    title = "Dry run: what would change" if report.dry_run else "Ingest summary"
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("result")
    table.add_column("files", justify="right")
    rows = [
        ("added", len(report.added)),
        ("updated", len(report.updated)),
        ("unchanged", len(report.unchanged)),
        ("removed", len(report.removed)),
        ("failed", len(report.failed)),
        ("skipped (not a document type)", len(report.skipped)),
    ]
    for name, n in rows:
        style = "red" if name == "failed" and n else None
        table.add_row(name, str(n), style=style)
    console.print(table)
    if not report.dry_run:
        # Where workers embedded, this process only waited on them: the rate is then the whole run's.
        seconds = report.embed_seconds or report.elapsed_seconds
        rate = report.chunks_written / seconds if seconds else 0.0
        ocr = ""
        if report.ocr_pages:
            ocr = f" ({report.ocr_pages} read by OCR, {report.ocr_seconds / report.ocr_pages:.1f} s/page)"
        how = f" with {' and '.join(report.embedded_with)}" if report.embedded_with else ""
        console.print(
            f"{report.pages} pages{ocr}, {report.chunks_written} chunks embedded{how} ({rate:.1f}/s), "
            f"{report.chunks_reused} kept, {report.chunks_removed} removed, "
            f"{report.elapsed_seconds:.1f} s",
            highlight=False,
        )
    if report.dry_run:
        for label, items in (("add", report.added), ("update", report.updated), ("remove", report.removed)):
            for source in items:
                console.print(f"  would {label}: {source}", highlight=False, markup=False)
    for note in report.notes:
        console.print(f"[dim]note: {_escape(note)}[/]", highlight=False)
    for p in report.failed:
        console.print(f"[red]failed[/]  {_escape(p.source)}: {_escape(p.reason)}", highlight=False)
    for p in report.skipped:
        console.print(f"[dim]skipped {_escape(p.source)}: {_escape(p.reason)}[/]", highlight=False)
    if report.hidden:
        console.print(f"[dim]{report.hidden} hidden entries (names starting with '.') ignored[/]")


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
