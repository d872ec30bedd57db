"""``python -m ingest DIR --watch`` on the real embedding model: how soon a file is searchable, a burst, a
watcher killed mid-burst, and the answers' time while a server's watcher ingests a burst.

- latency: a watcher runs over a folder; each sample document (text, Markdown, HTML, Word, PDF) is copied in,
  and the time until the store lists it is taken (the keyword index, read by this process). Beside it, in the
  same run, the raw way without a watcher: a new ``python -m ingest FILE`` process, from its start to its exit
  (a process start and a model load per file). ``--quiet-s`` (default 2 s) is part of the watcher's time.
- burst: N small files written at once: time until all are searchable, and the batches the watcher printed.
- killed: ``kill -9`` of the watcher in the middle of a burst (4 times the size, killed as its first files
  land), then a new one: the store must end as a clean
  ingest of the folder (the same chunk ids, none twice).
- answers (``--answers N``): the API with ``paths.watch`` on the folder and the default model; N questions
  asked on a quiet store, then N while a burst of files is being ingested; the first token's time of each.

    .venv/bin/python benchmarks/watch_bench.py [--burst 100] [--answers 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from evaluation.metrics import percentile  # noqa: E402

SAMPLES = ROOT / "data"
QUESTIONS = ["What is the hotel cap per night in Paris?", "How long did the storage outage last?"]


def env_for(store: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    return env | {"SOURCIER_PATHS__STORE_DIR": str(store), **extra}


def listed(store: Path) -> set[str]:
    import sqlite3

    path = store / "keywords.sqlite3"
    if not path.exists():
        return set()
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        return {row[0] for row in db.execute("SELECT DISTINCT source FROM chunk_docs")}
    except sqlite3.Error:
        return set()
    finally:
        db.close()


def chunk_ids(store: Path) -> list[str]:
    import sqlite3

    db = sqlite3.connect(f"file:{store / 'keywords.sqlite3'}?mode=ro", uri=True, timeout=30)
    try:
        return [row[0] for row in db.execute("SELECT id FROM chunks")]
    finally:
        db.close()


def wait_for(condition, timeout: float = 600.0) -> float:  # noqa: ANN001
    t0 = time.monotonic()
    while not condition():
        if time.monotonic() - t0 > timeout:
            raise SystemExit("timed out")
        time.sleep(0.05)
    return time.monotonic() - t0


def watcher(folder: Path, store: Path, quiet_s: float) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", str(folder), "--watch", "--quiet-s", str(quiet_s)],
        cwd=ROOT, env=env_for(store), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("watching"), line
    line = proc.stdout.readline()  # the first full pass
    return proc


def burst_files(folder: Path, n: int, start: int = 0) -> list[str]:
    texts = [(SAMPLES / "compost-guide.md").read_text(), (SAMPLES / "bird-survey-2024.txt").read_text()]
    names = []
    for i in range(start, start + n):
        name = f"burst/note-{i:04d}.md"
        (folder / name).parent.mkdir(exist_ok=True)
        (folder / name).write_text(f"# Note {i}\n\n{texts[i % 2][: 600 + i % 300]}\n\nReference {i}.", encoding="utf-8")
        names.append(name)
    return names


def latency_and_burst(burst: int, quiet_s: float) -> dict:
    row: dict = {"quiet_s": quiet_s}
    with tempfile.TemporaryDirectory() as tmp:
        folder, store = Path(tmp) / "docs", Path(tmp) / "store"
        folder.mkdir()
        (folder / "seed.txt").write_text("A first document, so that the store exists.", encoding="utf-8")
        proc = watcher(folder, store, quiet_s)
        try:
            watched, raw = [], []
            for sample in sorted(SAMPLES.iterdir()):
                shutil.copy(sample, folder / sample.name)
                watched.append(wait_for(lambda s=sample.name: s in listed(store)))
                alone = Path(tmp) / f"raw-{sample.name}"
                t0 = time.monotonic()
                subprocess.run(
                    [sys.executable, "-m", "ingest", str(sample), "-q"], cwd=ROOT, env=env_for(alone), check=True,
                    capture_output=True,
                )  # fmt: skip
                raw.append(time.monotonic() - t0)
            row["written -> searchable, watcher p50 s"] = round(percentile(watched, 50), 2)
            row["written -> searchable, watcher max s"] = round(max(watched), 2)
            row["raw: python -m ingest FILE, p50 s"] = round(percentile(raw, 50), 2)
            row["ratio watcher / raw"] = round(percentile(watched, 50) / percentile(raw, 50), 2)
            names = set(burst_files(folder, burst))
            row[f"burst of {burst}: all searchable s"] = round(wait_for(lambda: names <= listed(store)), 1)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=60)
        row[f"burst of {burst}: batches"] = sum(1 for line in out.splitlines() if " changes: " in line)
    return row


def killed_mid_burst(burst: int, quiet_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        folder, store, clean = Path(tmp) / "docs", Path(tmp) / "store", Path(tmp) / "clean"
        folder.mkdir()
        (folder / "seed.txt").write_text("A first document, so that the store exists.", encoding="utf-8")
        proc = watcher(folder, store, quiet_s)
        names = set(burst_files(folder, burst * 4))
        wait_for(lambda: len(listed(store)) > 1, timeout=120)  # the first files of the burst written
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        seen_at_kill = len(listed(store)) - 1
        burst_files(folder, 10, start=burst * 4)  # written while no one watches
        names |= {f"burst/note-{i:04d}.md" for i in range(burst * 4, burst * 4 + 10)}
        proc = watcher(folder, store, quiet_s)  # its first full pass finishes the work
        wait_for(lambda: names <= listed(store))
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        subprocess.run([sys.executable, "-m", "ingest", str(folder), "-q"], cwd=ROOT, env=env_for(clean), check=True)
        ids, expected = chunk_ids(store), chunk_ids(clean)
        return {
            "killed after (files in)": seen_at_kill,
            "chunks after restart": len(ids),
            "chunks of a clean ingest": len(expected),
            "same chunk ids": sorted(ids) == sorted(expected),
            "doubled": len(ids) - len(set(ids)),
        }


def answers_during_burst(n: int, burst: int) -> dict:
    import httpx

    from devkit.processes import free_port, start, stop
    from devkit.processes import wait_for as up

    with tempfile.TemporaryDirectory() as tmp:
        folder, store = Path(tmp) / "docs", Path(tmp) / "store"
        shutil.copytree(SAMPLES, folder)
        port = free_port()
        env = env_for(store, SOURCIER_PATHS__WATCH=json.dumps([str(folder)]), SOURCIER_SERVER__API_PORT=str(port))
        api = start([sys.executable, "-m", "api"], env=env, keep_stderr=False)
        try:
            up(f"http://127.0.0.1:{port}/health", api, seconds=300)
            wait_for(lambda: len(listed(store)) >= 5)
            url = f"http://127.0.0.1:{port}/v1/chat/completions"

            def first_token(question: str) -> float:
                body = {"messages": [{"role": "user", "content": question}], "store": False}
                reply = httpx.post(url, json=body, timeout=600, trust_env=False).json()
                return reply["timings"]["first_token_ms"] / 1000

            first_token(QUESTIONS[0])  # the model loaded
            quiet = [first_token(QUESTIONS[i % 2]) for i in range(n)]
            names = set(burst_files(folder, burst))
            during = []
            while len(during) < n:
                during.append(first_token(QUESTIONS[len(during) % 2]))
            ingested_by_then = len(names & listed(store))
            caught_up = wait_for(lambda: names <= listed(store), timeout=300)
        finally:
            stop(api, grace_s=30)
    return {
        "first token quiet, p50 s": round(percentile(quiet, 50), 2),
        f"first token during a burst of {burst}, p50 s": round(percentile(during, 50), 2),
        "ratio": round(percentile(during, 50) / percentile(quiet, 50), 2),
        "burst files ingested by the last answer": ingested_by_then,
        "all of the burst searchable, s after the last answer": round(caught_up, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--burst", type=int, default=100)
    ap.add_argument("--quiet-s", type=float, default=2.0)
    ap.add_argument("--answers", type=int, default=3, help="questions quiet and during a burst (0: skip)")
    args = ap.parse_args()
    print(json.dumps(latency_and_burst(args.burst, args.quiet_s)), flush=True)
    print(json.dumps(killed_mid_burst(args.burst, args.quiet_s)), flush=True)
    if args.answers:
        print(json.dumps(answers_during_burst(args.answers, args.burst)), flush=True)


if __name__ == "__main__":
    main()
