"""The model in its worker process against the same model in this process (issue 30), in one run.

1. Speed: the product's real prompts for the sample questions (retrieved and packed by the answerer over the
   sample store), each given to both models in the same order (so both reuse their own prompt caches alike),
   greedy, in the free style and under the quoted style's grammar; rounds alternate between the two. Prints
   time to first token (the prompt's evaluation and one token), tokens/s after it, and the answerability
   check's time (the same evaluation, without sampling), with ratios (goal: >= 0.97, in-process TTFT over
   the worker's, the worker's tokens/s over in-process).
2. Crash recovery: the worker killed (SIGKILL) right after an answer's first token, N times: the time from the
   kill to the new worker's first token for the next request, and the restart alone.
3. Memory: what the prompter (the GGUF's vocabulary, without its weights) costs this process, and the
   worker's RSS.

    .venv/bin/python benchmarks/worker_bench.py [--model PATH] [--rounds 2] [--crashes 3] [--tokens 48]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from benchmarks.answer_bench import QUESTIONS  # noqa: E402  (one list of sample questions)


def rss_mb(pid: int | None = None) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def real_prompts(settings, inline) -> list[tuple[object, str | None]]:
    """(prompt, quote grammar) of each sample question, as the answerer builds them."""
    from rag.answering.answer import build_answerer
    from rag.answering.quotes import answer_grammar

    answerer = build_answerer(settings, inline)
    prompts = []
    for question in QUESTIONS:
        answer = answerer.answer(question)
        if inline.last_prompt is None or not answer.sources:
            continue
        prompts.append((inline.last_prompt, answer_grammar([s.passage.text for s in answer.sources])))
        inline.last_prompt = None
    return prompts


def timed(model, prompt, grammar, decoding, tokens: int) -> tuple[float, float]:
    """(ms to the first piece, pieces/s after it) for one greedy generation."""
    t0 = time.perf_counter()
    first, n = None, 0
    for _ in model.stream(prompt, max_tokens=tokens, decoding=decoding, grammar=grammar):
        n += 1
        if first is None:
            first = time.perf_counter()
    end = time.perf_counter()
    rate = (n - 1) / (end - first) if first is not None and n > 1 and end > first else 0.0
    return ((first or end) - t0) * 1000, rate


def speed(inline, worker, prompts, rounds: int, tokens: int, settings) -> list[dict]:
    """Each figure from the same sequence of prompts on both models: consecutive prompts differ (other
    passages), so each one's passages are evaluated anew after the shared system prompt, in both."""
    decoding = settings.llm.model_copy(update={"temperature": 0.0, "repeat_penalty": 1.0})
    rows = []
    for style in ("free", "quoted", "check"):
        figures: dict[str, dict[str, list[float]]] = {name: {"ttft": [], "tps": []} for name in ("in", "w")}
        for _ in range(rounds):
            for name, model in (("in", inline), ("w", worker)):
                for prompt, grammar in prompts:
                    if style == "check":  # the answerability check: the prompt's evaluation, one forward pass
                        t0 = time.perf_counter()
                        model.answerability(prompt)
                        ttft, tps = (time.perf_counter() - t0) * 1000, 0.0
                    else:
                        ttft, tps = timed(model, prompt, grammar if style == "quoted" else None, decoding, tokens)
                    figures[name]["ttft"].append(ttft)
                    figures[name]["tps"].append(tps)
        mean = {name: {k: statistics.mean(v) for k, v in f.items()} for name, f in figures.items()}
        row = {
            "style": style,
            "prompts": len(prompts) * rounds,
            "prompt_tokens": round(statistics.mean(len(p.tokens) for p, _ in prompts)),
            "first_token_ms_in_process": round(mean["in"]["ttft"]),
            "first_token_ms_worker": round(mean["w"]["ttft"]),
            "ratio_first_token": round(mean["in"]["ttft"] / mean["w"]["ttft"], 3),
        }
        if style != "check":
            row |= {
                "tokens_per_s_in_process": round(mean["in"]["tps"], 2),
                "tokens_per_s_worker": round(mean["w"]["tps"], 2),
                "ratio_tokens_per_s": round(mean["w"]["tps"] / mean["in"]["tps"], 3),
            }
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def crash_recovery(worker, prompts, crashes: int) -> dict:
    from rag.errors import ModelCrashError

    prompt, _ = prompts[0]
    to_answer, restart = [], []
    for _ in range(crashes):
        pid = worker.process.pid
        pieces = worker.stream(prompt, max_tokens=64)
        next(pieces)
        t0 = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        try:
            list(pieces)
            raise SystemExit("the kill did not reach the answer being written")
        except ModelCrashError:
            restart_started = time.perf_counter()
        restart.append(restart_started - t0)
        next(iter(worker.stream(prompt, max_tokens=4)))
        to_answer.append(time.perf_counter() - t0)
    row = {
        "crashes": crashes,
        "kill_to_error_s": round(statistics.mean(restart), 3),
        "kill_to_next_first_token_s": [round(x, 2) for x in to_answer],
        "mean_s": round(statistics.mean(to_answer), 2),
        "restarts": worker.process.state()["restarts"],
    }
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", type=Path, help="a GGUF (default: the configured or packaged model)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--crashes", type=int, default=3)
    ap.add_argument("--tokens", type=int, default=48)
    args = ap.parse_args()

    from rag.llm import load_local, load_worker
    from rag.models.gguf import resolve_model_path
    from rag.settings import load_settings

    settings = load_settings()
    path = args.model or resolve_model_path(settings)
    base = rss_mb()
    inline = load_local(settings, path)
    with_inline = rss_mb()
    worker = load_worker(settings, path)
    memory = {
        "model": path.name,
        "parent_rss_mb_before": round(base),
        "in_process_model_rss_mb": round(with_inline - base),
        "prompter_vocabulary_rss_mb": round(rss_mb() - with_inline),
        "worker_rss_mb": round(rss_mb(worker.process.pid)),
    }
    print(json.dumps(memory), flush=True)
    try:
        prompts = real_prompts(settings, inline)
        inline.llama.reset()  # both start with an empty prompt cache, as the new worker has
        speed(inline, worker, prompts, args.rounds, args.tokens, settings)
        if args.crashes:
            crash_recovery(worker, prompts, args.crashes)
    finally:
        worker.close()


if __name__ == "__main__":
    main()
