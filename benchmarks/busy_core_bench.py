"""The model beside a busy core: raw llama-cpp-python with fixed threads against sourcier's model, which takes
the cores other processes leave free (``llm.adapt_threads``, ``rag.machine``), in one run.

The same prompt (a sample question's real prompt, as the answerer packs it) is evaluated from an empty cache
and followed by N greedy tokens, first on a quiet machine, then beside one process that keeps a core busy
(a Python loop, as an ingest worker reading a PDF would). Rows:

- raw llama.cpp, the configured threads (2 on these machines): what sourcier did before;
- raw llama.cpp, one thread fewer;
- sourcier's LocalLLM (adapt_threads on): the threads it chose are printed.

Each row: seconds to the first token and for the whole answer, quiet and busy, and the busy/quiet ratio.

    .venv/bin/python benchmarks/busy_core_bench.py [--model PATH] [--tokens 24] [--rounds 2]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "How long did the storage outage last?"


def the_prompt(settings, llm):
    from rag.answering.answer import build_answerer

    build_answerer(settings, llm).answer(QUESTION)
    return llm.last_prompt


def timed(pieces) -> tuple[float, float]:
    """(s to the first piece, s for all) of a generation, started when this is called."""
    t0 = time.perf_counter()
    first = None
    for _ in pieces:
        first = first or time.perf_counter() - t0
    return first or 0.0, time.perf_counter() - t0


def run_raw(llama, tokens: list[int], n: int) -> tuple[float, float]:
    """A greedy completion from an empty cache, llama-cpp-python as it is."""
    llama.reset()
    return timed(llama.create_completion(prompt=tokens, max_tokens=n, temperature=0.0, stream=True))


def run_ours(llm, prompt, n: int) -> tuple[float, float]:
    llm.llama.reset()
    return timed(llm.stream(prompt, max_tokens=n))


class BusyCore:
    """A process that keeps one core busy while the block runs."""

    def __enter__(self):
        self.proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        time.sleep(2.5)  # a load that lasts: the core watch takes the least of its last 2 s
        return self

    def __exit__(self, *exc):
        self.proc.kill()
        self.proc.wait()
        time.sleep(2.5)  # quiet again before the next measurement


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="a GGUF (default: the configured or packaged model)")
    parser.add_argument("--tokens", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()

    from rag.llm.local import load_local, open_gguf
    from rag.models.gguf import resolve_model_path
    from rag.settings import Settings

    settings = Settings()
    settings.llm.worker_process = False  # this process: the benchmark reads the threads it chose
    settings.llm.answerability_check = False  # the answer's prompt, whatever a small model would say of it
    path = args.model or resolve_model_path(settings)
    ours = load_local(settings, path)
    prompt = the_prompt(settings, ours)
    threads = settings.llm.n_threads
    raws = {}
    for n in sorted({threads, max(1, threads - 1)}, reverse=True):
        s = settings.model_copy(deep=True)
        s.llm.n_threads = s.llm.n_threads_batch = n
        raws[n] = open_gguf(path, s)
    print(f"model {path.name}, prompt {len(prompt.tokens)} tokens, {args.tokens} tokens, {args.rounds} round(s)")

    rows: dict[str, dict[str, list[tuple[float, float]]]] = {}

    def measure(state: str) -> None:
        for _ in range(args.rounds):
            for n, llama in raws.items():
                rows.setdefault(f"raw llama.cpp, {n} thread(s)", {}).setdefault(state, []).append(
                    run_raw(llama, prompt.tokens, args.tokens)
                )
            result = run_ours(ours, prompt, args.tokens)
            rows.setdefault("sourcier (adapt_threads)", {}).setdefault(state, []).append(result)
            print(f"  {state}: sourcier used {ours.threads} thread(s), {result[1]:.2f} s", flush=True)

    measure("quiet")
    with BusyCore():
        measure("busy")

    print(f"\n| {'':32} | first token quiet | busy | answer quiet | busy | busy/quiet |")
    print(f"|{'-' * 34}|---|---|---|---|---|")
    for name, states in rows.items():
        q_first = statistics.median(r[0] for r in states["quiet"])
        b_first = statistics.median(r[0] for r in states["busy"])
        q_all = statistics.median(r[1] for r in states["quiet"])
        b_all = statistics.median(r[1] for r in states["busy"])
        print(
            f"| {name:32} | {q_first:.2f} s | {b_first:.2f} s | {q_all:.2f} s | {b_all:.2f} s | {b_all / q_all:.1f}x |"
        )


if __name__ == "__main__":
    main()
