"""Load benchmark: several API clients at once while an ingest writes, and a client that vanishes mid-answer.

Starts `python -m rag serve` on 127.0.0.1 over the sample documents (ingested with the real embedder) with the
small SmolLM2 GGUF, then:

1. ``--clients`` (8) threads each ask ``--questions`` sample questions, streamed, while another process
   ingests ``--files`` (200) generated files into the same store. Every answer must end with its final chunk
   (sources, timings) and ``[DONE]``. Prints errors, complete answers, the wait in the model's queue
   (``timings.queue_ms``) p50/p95, seconds per answer p50/p95, and how long the ingest took beside them.
2. One client starts a long streamed answer, reads its first piece and closes the connection: the time until
   ``/health`` shows the model free again.

    .venv/bin/python benchmarks/load_bench.py [--clients 8] [--questions 3] [--files 200]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.answer_bench import QUESTIONS  # noqa: E402  (one list of sample questions)
from benchmarks.server_bench import BIN, free_port, start, stop, wait_for  # noqa: E402
from devkit.models import smollm_path  # noqa: E402
from evaluation.metrics import percentile  # noqa: E402

LONG = "Describe everything these documents say, in great detail, with every number."


def environment(home: Path) -> dict[str, str]:
    import os

    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env.update(
        {
            "SOURCIER_PATHS__STORE_DIR": str(home / "store"),
            "SOURCIER_PATHS__DOCS_DIR": str(home / "docs"),
            "SOURCIER_LLM__MODEL_PATH": str(smollm_path()),
            "SOURCIER_LLM__MAX_TOKENS": "64",
            # Every question reaches the model (the vague long one too), answered freely: this measures the
            # queue and the release of the model, not the relevance gates.
            "SOURCIER_RETRIEVAL__MIN_RERANK_SCORE": "0",
            "SOURCIER_RETRIEVAL__MIN_SIMILARITY": "0",
            "SOURCIER_LLM__ANSWER_STYLE": "free",
        }
    )
    return env


def generated_files(folder: Path, n: int) -> None:
    folder.mkdir(parents=True)
    words = ["budget", "voyage", "compost", "badge", "outage", "survey", "hotel", "contract", "renewal", "audit"]
    for i in range(n):
        text = " ".join(words[(i * 7 + j) % len(words)] for j in range(120))
        (folder / f"note-{i:03}.txt").write_text(f"Note {i}.\n\n{text}\n", encoding="utf-8")


def ask_streamed(base: str, question: str) -> dict:
    """One streamed question; the answer's final chunk (its timings), or the error."""
    import httpx

    body = {"messages": [{"role": "user", "content": question}], "stream": True}
    t0 = time.perf_counter()
    last, done = None, False
    try:
        with httpx.stream("POST", f"{base}/v1/chat/completions", json=body, timeout=600, trust_env=False) as reply:
            if reply.status_code != 200:
                return {"error": f"HTTP {reply.status_code}"}
            for line in reply.iter_lines():
                if line == "data: [DONE]":
                    done = True
                elif line.startswith("data: "):
                    last = json.loads(line[6:])
    except httpx.HTTPError as exc:
        return {"error": repr(exc)}
    if last is not None and "error" in last:  # the server's own word on why (a crashed model: its restart)
        return {"error": last["error"].get("message", "error event")}
    if not done or last is None or "timings" not in last:
        return {"error": "incomplete answer"}
    return {"seconds": time.perf_counter() - t0, "queue_ms": last["timings"]["queue_ms"]}


def load_run(base: str, env: dict[str, str], home: Path, clients: int, questions: int, files: int) -> dict:
    import subprocess

    generated_files(home / "docs" / "incoming", files)
    results: list[dict] = []
    lock = threading.Lock()

    def client(n: int) -> None:
        for i in range(questions):
            outcome = ask_streamed(base, QUESTIONS[(n + i) % len(QUESTIONS)])
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
    t0 = time.perf_counter()
    command = [str(BIN / "python"), "-m", "ingest", "-q", str(home / "docs" / "incoming")]
    ingest = subprocess.Popen(command, cwd=home, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for t in threads:
        t.start()
    _, ingest_err = ingest.communicate(timeout=3600)
    ingest_s = time.perf_counter() - t0
    for t in threads:
        t.join()
    ok = [r for r in results if "error" not in r]
    return {
        "clients": clients,
        "answers": len(results),
        "complete": len(ok),
        "errors": [r["error"] for r in results if "error" in r][:5],
        "queue_ms_p50": round(percentile([r["queue_ms"] for r in ok], 50) or 0),
        "queue_ms_p95": round(percentile([r["queue_ms"] for r in ok], 95) or 0),
        "answer_s_p50": round(percentile([r["seconds"] for r in ok], 50) or 0, 1),
        "answer_s_p95": round(percentile([r["seconds"] for r in ok], 95) or 0, 1),
        "ingest_files": files,
        "ingest_s": round(ingest_s, 1),
        "ingest_rc": ingest.returncode,
        "ingest_stderr": ingest_err.strip()[-300:],
        "wall_s": round(time.perf_counter() - t0, 1),
    }


def vanished_client(base: str) -> dict:
    import httpx

    body = {"messages": [{"role": "user", "content": LONG}], "stream": True, "max_tokens": 1500}
    with httpx.Client(timeout=120, trust_env=False) as client:
        with client.stream("POST", f"{base}/v1/chat/completions", json=body) as reply:
            for line in reply.iter_lines():
                if line.startswith("data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    break  # the first piece of the answer; then the client goes away
            busy = client.get(f"{base}/health").json()["model"]["busy"]
        left = time.perf_counter()
        while client.get(f"{base}/health").json()["model"]["busy"]:
            time.sleep(0.01)
            if time.perf_counter() - left > 60:
                return {"busy_when_left": busy, "released_ms": None}
    return {"busy_when_left": busy, "released_ms": round((time.perf_counter() - left) * 1000, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--questions", type=int, default=3)
    ap.add_argument("--files", type=int, default=200)
    args = ap.parse_args()
    import subprocess

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        shutil.copytree(ROOT / "data", home / "docs")
        env = environment(home)
        first = subprocess.run([str(BIN / "python"), "-m", "ingest", "-q", str(home / "docs")], cwd=home, env=env,
                               capture_output=True, text=True)  # fmt: skip
        if first.returncode != 0:
            raise SystemExit(first.stderr)
        port = free_port()
        server = start([str(BIN / "python"), "-m", "rag", "serve", "--port", str(port)], env=env)
        try:
            base = f"http://127.0.0.1:{port}"
            wait_for(f"{base}/health")
            ask_streamed(base, QUESTIONS[0])  # the model loads
            print(json.dumps(load_run(base, env, home, args.clients, args.questions, args.files)), flush=True)
            print(json.dumps(vanished_client(base)), flush=True)
        finally:
            stop(server)


if __name__ == "__main__":
    main()
