"""``python -m ingest --watch`` (ingest.watch): real files and a real inotify watcher, the real Chroma store and
keyword index, the fake embedder."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from ingest.watch import FolderWatch
from tests.conftest import make_settings
from tests.fakes import fake_ingestor

QUIET = 0.8


@pytest.fixture
def watched(tmp_path, monkeypatch):
    """A folder watched in a thread: (folder, settings, batches, store reader, stop)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "first.md").write_text("# First\n\nThe canteen opens at noon.", encoding="utf-8")
    settings = make_settings(tmp_path)
    monkeypatch.setattr("ingest.pipeline.build_ingestor", lambda s, progress=None: fake_ingestor(s)[0])
    batches = []
    store = fake_ingestor(settings)[0].store  # opened first: Chroma's first open of a folder is not thread-safe
    watch = FolderWatch([docs], settings, quiet_s=QUIET, rescan_s=3600, on_batch=batches.append)
    stop = threading.Event()
    thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
    thread.start()
    wait_until(lambda: sources(store) == {"first.md"})
    yield docs, settings, batches, store, watch
    stop.set()
    thread.join(timeout=20)
    assert not thread.is_alive()


def sources(store) -> set[str]:
    return {d.source for d in store.documents()}


def texts(store) -> str:
    return " ".join(text for _, text in store.iter_documents())


def wait_until(condition, timeout: float = 20.0) -> float:
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            pytest.fail("the store did not follow the folder in time")
        time.sleep(0.05)
    return time.monotonic() - started


def test_added_changed_moved_and_deleted_files_follow(watched):
    docs, _, batches, store, _ = watched
    (docs / "second.md").write_text("# Second\n\nParking permits cost 30 euros.", encoding="utf-8")
    latency = wait_until(lambda: sources(store) == {"first.md", "second.md"})
    assert latency < QUIET + 3
    (docs / "first.md").write_text("# First\n\nThe canteen opens at half past eleven.", encoding="utf-8")
    # the new chunk is written before the old one is removed (a reader never sees the document missing)
    wait_until(lambda: "half past eleven" in texts(store) and "opens at noon" not in texts(store))
    (docs / "second.md").rename(docs / "parking.md")
    wait_until(lambda: sources(store) == {"first.md", "parking.md"})
    (docs / "first.md").unlink()
    wait_until(lambda: sources(store) == {"parking.md"})
    sub = docs.parent / "elsewhere"
    sub.mkdir()
    (sub / "a.md").write_text("# A\n\nAlpha.", encoding="utf-8")
    (sub / "b.txt").write_text("Beta.", encoding="utf-8")
    sub.rename(docs / "moved-in")  # a folder moved in: each of its files
    wait_until(lambda: sources(store) == {"parking.md", "moved-in/a.md", "moved-in/b.txt"})
    (docs / "moved-in").rename(docs.parent / "gone")  # and moved out: each removed
    wait_until(lambda: sources(store) == {"parking.md"})
    assert len(store.ids()) == len({cid for cid, _ in store.iter_metadatas()})


def test_a_file_written_slowly_is_read_once_whole(watched):
    docs, _, batches, store, _ = watched
    path = docs / "slow.md"
    pieces = [f"Paragraph {i}: the report grows by one line.\n\n" for i in range(6)]
    with path.open("w", encoding="utf-8") as f:
        for piece in pieces:
            f.write(piece)
            f.flush()
            time.sleep(0.2)  # each pause well under the quiet time (a margin for a busy machine)
    wait_until(lambda: "Paragraph 5" in texts(store))
    time.sleep(QUIET * 3)
    reads = [b.report for b in batches if b.report is not None and not b.rescan]
    assert [r.added for r in reads if r.added] == [["slow.md"]], "read once, when whole"
    assert not any(r.updated for r in reads), [(r.added, r.updated, r.unchanged) for r in reads]


def test_a_burst_is_one_batch_and_hidden_or_unknown_files_are_left(watched):
    docs, _, batches, store, _ = watched
    before = len(batches)
    for i in range(120):
        (docs / f"note-{i:03d}.txt").write_text(f"Note {i}: meeting room {i} is booked.", encoding="utf-8")
    (docs / ".note.swp").write_text("editor swap")
    (docs / "photo.xyz").write_text("not a document")
    wait_until(lambda: len(sources(store)) == 121)
    time.sleep(QUIET * 2)
    assert len(batches) - before <= 3  # the burst came in one or two quiet periods, not 120 writes
    assert sources(store) == {"first.md", *(f"note-{i:03d}.txt" for i in range(120))}


def test_a_watcher_stopped_and_started_again_loses_and_doubles_nothing(tmp_path, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(5):
        (docs / f"doc{i}.md").write_text(f"# Doc {i}\n\nItem {i} costs {i} euros.", encoding="utf-8")
    settings = make_settings(tmp_path)
    monkeypatch.setattr("ingest.pipeline.build_ingestor", lambda s, progress=None: fake_ingestor(s)[0])
    store = fake_ingestor(settings)[0].store

    def watch_for(seconds: float) -> None:
        stop = threading.Event()
        watch = FolderWatch([docs], settings, quiet_s=QUIET, rescan_s=3600)
        thread = threading.Thread(target=watch.run, args=(stop,), daemon=True)
        thread.start()
        time.sleep(seconds)
        stop.set()
        thread.join(timeout=20)

    watch_for(2.0)
    assert sources(store) == {f"doc{i}.md" for i in range(5)}
    # while nobody watches: one added, one changed, one deleted
    (docs / "doc5.md").write_text("# Doc 5\n\nItem 5 costs 5 euros.", encoding="utf-8")
    (docs / "doc0.md").write_text("# Doc 0\n\nItem 0 is free now.", encoding="utf-8")
    (docs / "doc1.md").unlink()
    watch_for(2.0)  # the first full pass catches up
    assert sources(store) == {"doc0.md", "doc2.md", "doc3.md", "doc4.md", "doc5.md"}
    assert "free now" in texts(store) and "Item 1 costs" not in texts(store)
    per_doc = [m["source"] for _, m in store.iter_metadatas()]
    assert len(per_doc) == 5, "one chunk per document: nothing doubled"


def test_watch_needs_folders(tmp_path):
    (tmp_path / "file.md").write_text("x")
    with pytest.raises(NotADirectoryError):
        FolderWatch([tmp_path / "file.md"], make_settings(tmp_path))


def test_the_cli_watches_until_sigterm(tmp_path):
    """``python -m ingest DIR --watch`` in its own process: prints its batches, stops on SIGTERM (no models
    needed when the folder is empty: nothing is embedded)."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    docs = tmp_path / "docs"
    docs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", str(docs), "--watch", "--store", str(tmp_path / "store")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        assert first.startswith("watching "), first
        time.sleep(1.0)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0 and "stopped watching" in out
    assert Path(tmp_path / "store").is_dir()


def test_a_servers_watcher_runs_lower_and_ends_with_its_server(tmp_path):
    """``paths.watch``: the page and the API start ``python -m ingest --watch`` in a process of its own, at a
    lower priority; when the server is killed (-9), the watcher stops by itself."""
    import os
    import signal
    import subprocess
    import sys

    from tests.conftest import REPO

    docs = tmp_path / "docs"
    docs.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env |= {"SOURCIER_PATHS__WATCH": f'["{docs}"]', "SOURCIER_PATHS__STORE_DIR": str(tmp_path / "store")}
    server = subprocess.Popen(
        [sys.executable, "-c", "import time, sys\nfrom rag.settings import Settings\nfrom ingest.watch import "
         "start_watcher\np = start_watcher(Settings())\nprint(p.pid, flush=True)\ntime.sleep(600)"],
        cwd=REPO, env=env, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        watcher = int(server.stdout.readline())
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # running: its priority lowered once it has started
            nice = int(Path(f"/proc/{watcher}/stat").read_text().rsplit(")", 1)[1].split()[16])
            if nice == 10:
                break
            time.sleep(0.1)
        assert nice == 10
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and Path(f"/proc/{watcher}").exists():
            state = Path(f"/proc/{watcher}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state == "Z":  # ended, waiting to be reaped by init
                break
            time.sleep(0.2)
        alive = (
            Path(f"/proc/{watcher}").exists()
            and Path(f"/proc/{watcher}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
        )
        assert not alive, "the watcher outlived its server"
    finally:
        if server.poll() is None:
            server.kill()
