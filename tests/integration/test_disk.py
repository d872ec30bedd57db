"""A full disk and a read-only store folder: a clear error, and the store that was there still answers.

Each case runs the real CLI inside a private mount namespace (``unshare -m``): the store is copied onto
a small tmpfs (full disk) or bind-mounted read-only; skipped where mounts are not permitted.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, SAMPLE_DATA
from tests.integration.test_real_ingest import cli

pytestmark = pytest.mark.integration

WORDS = ["alpha", "beta", "gamma", "delta", "renard", "hibou", "otter", "kestrel", "budget", "voyage"]


def in_mount_namespace(script: str) -> subprocess.CompletedProcess:
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    probe = subprocess.run(["unshare", "-m", "sh", "-c", "mount -t tmpfs tmpfs /mnt"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("mount namespaces are not permitted here (needs root)")
    return subprocess.run(["unshare", "-m", "sh", "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("disk") / "store"
    assert cli("ingest", str(SAMPLE_DATA), "--store", str(store), "-q").returncode == 0
    return store


def big_corpus(folder: Path) -> Path:
    rng = random.Random(5)
    folder.mkdir()
    for i in range(12):
        paragraphs = (" ".join(rng.choice(WORDS) for _ in range(90)) for _ in range(30))
        (folder / f"note{i:02}.txt").write_text("\n\n".join(paragraphs), encoding="utf-8")
    return folder


def journey(store: Path, corpus: Path) -> str:
    py = sys.executable
    return (
        f"{py} -m ingest {corpus} --store {store} -q; echo INGEST_RC=$?; "
        f"{py} -m rag --store {store} ask --json 'What is the hotel cap per night in Paris?' > /dev/null; "
        "echo ASK_RC=$?"
    )


def test_a_full_disk_is_a_clear_error_and_the_store_still_answers(sample_store, tmp_path):
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    size_kb = sum(f.stat().st_size for f in sample_store.rglob("*") if f.is_file()) // 1024 + 700
    script = f"mount -t tmpfs -o size={size_kb}k tmpfs {mnt} && cp -r {sample_store} {mnt}/store && "
    done = in_mount_namespace(script + journey(mnt / "store", big_corpus(tmp_path / "corpus")))
    out = done.stdout + done.stderr
    assert "INGEST_RC=2" in out, out
    assert "the disk is full: free some space and run the ingest again" in out, out
    assert "ASK_RC=0" in out, out  # the documents ingested before still answer


def test_a_read_only_store_is_a_clear_error_and_nothing_is_lost(sample_store, tmp_path):
    store = tmp_path / "store"
    shutil.copytree(sample_store, store)
    before = sorted((p.relative_to(store), p.read_bytes()) for p in store.rglob("*") if p.is_file())
    script = f"mount --bind {store} {store} && mount -o remount,ro,bind {store} && "
    done = in_mount_namespace(script + journey(store, big_corpus(tmp_path / "corpus")))
    out = done.stdout + done.stderr
    assert "INGEST_RC=2" in out and "the store folder is read-only" in out, out
    assert "ASK_RC=2" in out and "Chroma writes to its database even to read it" in out, out
    assert "Traceback" not in out, out
    after = sorted((p.relative_to(store), p.read_bytes()) for p in store.rglob("*") if p.is_file())
    assert after == before  # writable again (outside the namespace): byte for byte what was there
    ask = cli("rag", "--store", str(store), "ask", "What is the hotel cap per night in Paris?")
    assert ask.returncode == 0 and "170" in ask.stdout, ask.stdout + ask.stderr
