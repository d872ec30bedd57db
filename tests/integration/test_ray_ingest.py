"""The archive ingest on a real local Ray cluster (2 CPUs, started here): the store it writes equals a
local ingest's, a worker killed mid-run is replaced and the result is still equal, and an unchanged
re-run sends nothing to the cluster. Real tokenizer, real embedders (the cluster's in bfloat16 where the CPU has
AMX), real Chroma store."""

from __future__ import annotations

import shutil
import signal
import threading
import time
from pathlib import Path

import psutil
import pytest

from ingest.pipeline import build_ingestor
from rag.machine import bf16_in_hardware
from rag.search.store import drop_cached_stores
from tests.conftest import SAMPLE_DATA, make_settings
from tests.fakes import assert_same_indexes, store_snapshot

ray = pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[cluster]' (setup.sh installs it)")

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def archive(tmp_path: Path, copies: int) -> Path:
    """The sample documents, ``copies`` times under different names."""
    folder = tmp_path / "archive"
    folder.mkdir()
    for n in range(copies):
        for f in SAMPLE_DATA.iterdir():
            shutil.copy(f, folder / f"{n:02d}-{f.name}")
    return folder


def ingest(tmp_path: Path, folder: Path, name: str, ray_address: str | None):
    settings = make_settings(tmp_path)
    settings.paths.store_dir = tmp_path / name
    settings.ingest.ray_address = ray_address
    settings.ingest.workers = 0
    ingestor = build_ingestor(settings)
    report = ingestor.run([folder])
    return report, ingestor.store


def assert_same_store(a, b) -> None:
    left, right = store_snapshot(a), store_snapshot(b)
    assert_same_indexes(left, right)
    assert left.keys() == right.keys() and left
    for cid, (doc, meta, vector) in left.items():
        other_doc, other_meta, other_vector = right[cid]
        assert (doc, meta) == (other_doc, other_meta)
        # The cluster's workers embed in bfloat16 where their CPU has AMX, this test's local ingest (small,
        # one process) with the float32 ONNX copy: the project's bar for vectors that agree.
        assert sum(x * y for x, y in zip(vector, other_vector, strict=True)) >= 0.9999


def test_a_ray_ingest_writes_the_store_a_local_ingest_writes(cluster, tmp_path):
    folder = archive(tmp_path, 2)
    local, local_store = ingest(tmp_path, folder, "local", None)
    remote, remote_store = ingest(tmp_path, folder, "ray", "local:2")
    assert remote.added == local.added and len(remote.added) == 10 and remote.ok
    assert (remote.pages, remote.chunks_written) == (local.pages, local.chunks_written)
    assert remote.embed_seconds == 0  # every vector came from the cluster
    # the cluster's work is bulk work: bfloat16 where the CPU multiplies it in hardware
    assert remote.embedded_with == ["torch-bf16 on cpu" if bf16_in_hardware() else "onnx on cpu"]
    assert local.embedded_with == ["onnx on cpu"]  # a small local ingest keeps the quick start
    assert_same_store(local_store, remote_store)
    drop_cached_stores()

    # unchanged: nothing is sent, the cluster is not even joined (this address would fail)
    again, _ = ingest(tmp_path, folder, "ray", "127.0.0.1:1")
    assert len(again.unchanged) == 10 and again.chunks_written == 0 and not again.failed


def kill_a_worker_when_busy(killed: list[int], stop: threading.Event) -> None:
    """SIGKILL the first Ray Data worker seen, once it has had time to take a file."""
    while not stop.is_set():
        workers = [p for p in psutil.process_iter(["cmdline"]) if "MapWorker" in " ".join(p.info["cmdline"] or [])]
        if workers:
            time.sleep(1.5)
            try:
                workers[0].send_signal(signal.SIGKILL)
                killed.append(workers[0].pid)
            except psutil.Error:
                continue
            return
        time.sleep(0.05)


def test_a_worker_killed_mid_run_is_replaced_and_the_store_is_the_same(cluster, tmp_path):
    folder = archive(tmp_path, 6)
    killed: list[int] = []
    stop = threading.Event()
    killer = threading.Thread(target=kill_a_worker_when_busy, args=(killed, stop), daemon=True)
    killer.start()
    try:
        remote, remote_store = ingest(tmp_path, folder, "ray", "local:2")
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray worker was seen to kill"
    local, local_store = ingest(tmp_path, folder, "local", None)
    assert remote.ok and remote.added == local.added and len(remote.added) == 30
    assert_same_store(local_store, remote_store)
