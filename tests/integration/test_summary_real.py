"""``sourcier summarize`` and a summary question with the real packaged embedder, Chroma and a real GGUF (the
small SmolLM2: what is checked is the shape, the page check and the cache, not the wording)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from devkit import REPO, SAMPLE_DATA
from devkit.models import smollm_path

pytestmark = pytest.mark.integration


def run(*args: str, store) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env |= {"SOURCIER_LLM__MODEL_PATH": str(smollm_path())}
    cmd = [sys.executable, "-m", "sourcier", "--store", str(store), *args]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, env=env, timeout=900)


def test_a_pdf_is_summarised_with_its_pages_checked_then_kept(tmp_path):
    store = tmp_path / "store"
    assert run("ingest", str(SAMPLE_DATA), "-q", store=store).returncode == 0
    first = run("summarize", "politique-teletravail.pdf", store=store)
    assert first.returncode in (0, 1), first.stderr  # 1: no point the pages back (a 135M model may write none)
    assert re.search(r"sections: (\d+)/\1 done", first.stderr) and "points checked against their pages" in first.stderr
    written, recited, dropped = map(int, re.search(r"(\d+) written, (\d+) cited to another page, (\d+) left out",
                                                   first.stderr).groups())  # fmt: skip
    points = [line for line in first.stdout.splitlines() if line.startswith("- ")]
    assert len(points) == written - dropped and all(re.search(r"\(p\. [123]\)$", p) for p in points)
    if points:  # kept: asked again, the model is not run
        again = run("summarize", "politique-teletravail.pdf", "--json", store=store)
        assert again.returncode == 0 and '"cached": true' in again.stdout
    asked = run("ask", "--no-server", "Résume la politique de télétravail", store=store)
    assert "summary of politique-teletravail.pdf" in asked.stdout, asked.stdout + asked.stderr
