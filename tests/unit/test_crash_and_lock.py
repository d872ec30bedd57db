"""kill -9 at random moments, concurrent ingests: the store always ends equal to a clean ingest."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from rag.errors import IngestLockedError
from rag.search.store import drop_cached_stores
from rag.search.writer_lock import ingest_lock
from tests.conftest import REPO, SAMPLE_DATA, make_settings
from tests.fakes import fake_ingestor, store_snapshot


def build_corpus(root: Path) -> Path:
    shutil.copytree(SAMPLE_DATA, root)
    rng = random.Random(7)
    words = ["alpha", "beta", "gamma", "delta", "renard", "hibou", "compost", "certificat", "voyage", "budget"]
    for i in range(12):
        text = "\n\n".join(" ".join(rng.choice(words) for _ in range(rng.randint(20, 90))) for _ in range(8))
        (root / f"gen{i:02}.txt").write_text(f"Generated note {i}.\n\n{text}", encoding="utf-8")
    return root


def start_driver(store_dir: Path, corpus: Path, delay: float) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.crash_driver", str(store_dir), str(corpus), str(delay)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill_after_random_writes(store_dir: Path, corpus: Path, rng: random.Random) -> bool:
    """Start an ingest, let it embed a random number of batches, kill -9 it. True if it was killed."""
    proc = start_driver(store_dir, corpus, delay=0.02)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    batches = rng.randint(0, 25)
    for _ in range(batches):
        line = proc.stdout.readline()
        if not line or line.startswith("done"):
            break
    time.sleep(rng.uniform(0, 0.03))  # land anywhere between two writes
    killed = proc.poll() is None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    proc.stdout.close()
    proc.stderr.close()
    return killed


def clean_snapshot(corpus: Path, where: Path) -> dict:
    settings = make_settings(where)
    ingestor, _ = fake_ingestor(settings)
    report = ingestor.run([corpus])
    assert report.ok
    return store_snapshot(ingestor.store)


def finish_ingest(store_dir: Path, corpus: Path, timeout: float = 120) -> None:
    """Run the driver's ingest to the end in its own process (what a user does after a crash)."""
    proc = subprocess.run(
        [sys.executable, "-m", "tests.crash_driver", str(store_dir), str(corpus)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, proc.stderr


def final_snapshot(store_dir: Path, corpus: Path) -> dict:
    finish_ingest(store_dir, corpus)
    settings = make_settings(store_dir.parent)
    settings.paths.store_dir = store_dir
    drop_cached_stores()  # other processes wrote to this store since this process last opened it
    return store_snapshot(fake_ingestor(settings)[0].store)


def test_kill_9_at_random_moments_then_rerun_equals_a_clean_ingest(tmp_path):
    rng = random.Random(int(os.environ.get("CRASH_SEED", "2026")))
    corpus = build_corpus(tmp_path / "corpus")
    store_dir = tmp_path / "crashy" / "store"
    kills = sum(kill_after_random_writes(store_dir, corpus, rng) for _ in range(4))
    assert kills >= 3  # the test really interrupted ingests
    assert final_snapshot(store_dir, corpus) == clean_snapshot(corpus, tmp_path / "clean1")

    # now change the corpus and crash during the update
    (corpus / "gen03.txt").unlink()
    (corpus / "gen05.txt").write_text("Completely new content about owls.\n\n" * 30, encoding="utf-8")
    with open(corpus / "gen07.txt", "a", encoding="utf-8") as fh:
        fh.write("\n\nAn appended paragraph about foxes and compost.")
    for _ in range(3):
        kill_after_random_writes(store_dir, corpus, rng)
    final = final_snapshot(store_dir, corpus)
    assert final == clean_snapshot(corpus, tmp_path / "clean2")
    assert not any("gen03.txt" in str(v[1]) for v in final.values())


def test_second_ingest_is_refused_while_one_runs(tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    store_dir = tmp_path / "s" / "store"
    proc = start_driver(store_dir, corpus, delay=0.5)
    try:
        assert proc.stdout.readline().strip() == "ready"
        refused = pytest.raises(IngestLockedError, match=r"another ingest is already writing .*pid \d+")
        with refused, ingest_lock(store_dir):
            pass
        cli = subprocess.run(
            [sys.executable, "-m", "ingest", str(corpus), "--store", str(store_dir)],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert cli.returncode == 2 and "another ingest is already writing" in cli.stderr
    finally:
        proc.kill()
        proc.wait()
        proc.stdout.close()
        proc.stderr.close()


def test_wait_flag_waits_for_the_running_ingest(tmp_path):
    store_dir = tmp_path / "store"
    order = []
    with ingest_lock(store_dir):

        def second():
            with ingest_lock(store_dir, wait=True):
                order.append("second")

        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(timeout=10)
    assert order == ["first done", "second"]


def test_lock_is_released_by_a_killed_process(tmp_path):
    corpus = build_corpus(tmp_path / "corpus")
    store_dir = tmp_path / "s" / "store"
    proc = start_driver(store_dir, corpus, delay=1.0)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stdout.close()
    proc.stderr.close()
    with ingest_lock(store_dir):  # no stale lock
        pass


def test_queries_keep_being_served_while_another_process_ingests(tmp_path):
    """The page's retriever answers throughout an ingest that adds, changes and deletes files."""
    from rag.search.retrieval import LiveRetriever
    from tests.fakes import FAKE_INFO, FakeEmbedder

    corpus = build_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path)
    fake_ingestor(settings)[0].run([corpus])
    live = LiveRetriever(settings, FakeEmbedder(), FAKE_INFO)
    for i in range(12):  # every generated note changes, one sample goes, new files come
        (corpus / f"gen{i:02}.txt").write_text(f"Rewritten note {i} about otters and kestrels.", encoding="utf-8")
    (corpus / "compost-guide.md").unlink()
    proc = start_driver(settings.paths.store_dir, corpus, delay=0.05)
    served, errors = 0, []
    while proc.poll() is None:
        try:
            live.search("otters kestrels budget voyage", k=5)
            served += 1
        except Exception as exc:  # any failure is the bug this test exists for
            errors.append(repr(exc))
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert not errors, errors[:3]
    assert served >= 5, f"only {served} queries during the ingest"
    final = live.search("Rewritten note otters kestrels", k=30)
    assert any(p.source.startswith("gen") and "otters" in p.text for p in final)
    assert not any(p.source == "compost-guide.md" for p in live.search("compost", k=30))
    print(f"{served} queries served during the ingest, 0 errors")
    drop_cached_stores()


def test_a_store_folder_that_cannot_be_written_is_a_clear_error(tmp_path):
    from rag.errors import StoreError

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    expected = r"cannot write to the store folder .*a-file/store.*nothing was changed"
    with pytest.raises(StoreError, match=expected), ingest_lock(blocker / "store"):
        pass


def test_a_fresh_reader_process_during_an_ingest_gets_answers_not_errors(tmp_path):
    """What `python -m rag ask` does: open the store in a new process while another one writes."""
    corpus = build_corpus(tmp_path / "corpus")
    settings = make_settings(tmp_path)
    fake_ingestor(settings)[0].run([corpus])
    for i in range(12):
        (corpus / f"gen{i:02}.txt").write_text(f"Changed note {i} about otters.", encoding="utf-8")
    reader = (
        "import sys\nfrom pathlib import Path\nfrom tests.conftest import make_settings\n"
        "from tests.fakes import FakeEmbedder, fake_ingestor\nfrom rag.search.retrieval import Retriever\n"
        "s = make_settings(Path(sys.argv[1]))\n"
        "print(len(Retriever(fake_ingestor(s)[0].store, FakeEmbedder(), s).search('otters budget', k=5)))"
    )
    proc = start_driver(settings.paths.store_dir, corpus, delay=0.2)
    results = []
    while proc.poll() is None and len(results) < 3:
        done = subprocess.run([sys.executable, "-c", reader, str(tmp_path)], cwd=REPO, capture_output=True, text=True)
        results.append((done.returncode, done.stdout.strip(), done.stderr[-300:]))
    proc.communicate(timeout=60)
    assert results and all(rc == 0 and out == "5" for rc, out, _ in results), results
