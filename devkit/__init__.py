"""What the tests and the benchmarks share, and nothing of the product imports: servers started and stopped
by their process id (``devkit.processes``), scanned pages made on the fly (``devkit.scans``), the small
packaged model they answer with (``devkit.models``). Not part of the wheel."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SAMPLE_DATA = REPO / "data"
