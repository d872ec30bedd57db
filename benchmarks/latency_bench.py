"""How long a person waits for an answer, warm, lever by lever, against raw llama.cpp in the same run.

Questions: the six below over the sample documents (the default store: run the README's ingest first), and
``--piaf N`` / ``--covid N`` answerable questions of the evaluation sets over their stores (made by
``python -m evaluation ... --workdir WORKDIR``, ingested here when missing). Each configuration (``--configs``:
the speed levers, see CONFIGS) loads the default model once in this process and answers every question
through the product's own Answerer, the model's cache kept between questions as the page and the API keep it.
For each answer, raw llama-cpp-python then does the same work on the same model: the prompt tokens our
answerability check evaluated (after the same cached prefix), and greedy decoding of as many tokens as our
quote took, under the same grammar, one token at a time.

Prints one JSON line per configuration and a table: p50 of retrieval (with the reranker), of the first
visible token and of the answer's first word (both counted from the question, retrieval included); prefill
tokens/s ours over raw; the quote's tokens/s ours over raw; and how many answers are identical to the first
configuration's (greedy decoding: a lever that changes an answer shows here).

With ``--cli N``, first: `sourcier ask` timed from its start to the answer's first byte and to its end, N times
without a server, then N times with `sourcier serve` running (warmed by another question) over the default store.

    .venv/bin/python benchmarks/latency_bench.py [--piaf 30] [--covid 30] [--cli 2]
        [--configs baseline lazy drafts flash defaults all]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from evaluation.metrics import percentile  # noqa: E402

SAMPLE_QUESTIONS = [
    "How long did the storage outage last?",
    "What is the hotel cap per night in Paris?",
    "Combien de jours par semaine peut-on télétravailler ?",
    "How many species were recorded in the bird survey?",
    "À quelle fréquence faut-il aérer le tas de compost ?",
    "Quel jour de la semaine est un jour de présence commun ?",
]
# name -> settings of the levers (llm.*)
CONFIGS = {
    "baseline": {"draft_tokens": 0, "lazy_grammar": False, "flash_attn": False},
    "lazy": {"draft_tokens": 0, "lazy_grammar": True, "flash_attn": False},
    "drafts": {"draft_tokens": 8, "lazy_grammar": False, "flash_attn": False},
    "flash": {"draft_tokens": 0, "lazy_grammar": False, "flash_attn": True},
    "defaults": {"draft_tokens": 8, "lazy_grammar": True, "flash_attn": False},  # what ships
    "all": {"draft_tokens": 8, "lazy_grammar": True, "flash_attn": True},
}
EVAL = ROOT.parent / "shared" / "eval"
SETS = {"piaf": "piaf/piaf-v1.0.json", "covid_qa": "covid_qa/200423_covidQA.json"}


def cpu() -> str:
    name = platform.processor() or "?"
    try:
        info = Path("/proc/cpuinfo").read_text()
        name = next(line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name"))
        amx = " (AMX)" if " amx_int8" in info else " (no AMX)"
    except (OSError, StopIteration):
        amx = ""
    return f"{name}{amx}, {len(os.sched_getaffinity(0))} cores"


def question_sets(args: argparse.Namespace) -> list[tuple[str, Path, list[str]]]:
    """(name, store folder, questions): the samples on the default store, then the evaluation sets."""
    from evaluation.__main__ import ingest_corpus
    from evaluation.runner import sample_questions, store_dir_for
    from evaluation.sets import convert_squad, read_jsonl
    from rag.settings import load_settings

    settings = load_settings()
    sets = [("samples", settings.paths.store_dir, SAMPLE_QUESTIONS[: args.samples])]
    for name, count in (("piaf", args.piaf), ("covid_qa", args.covid)):
        if not count:
            continue
        questions_file = convert_squad(EVAL / SETS[name], args.workdir / name, holdout=0.1, seed=13)
        questions = sample_questions(read_jsonl(questions_file), count, 0, 13)
        settings.paths.store_dir = store_dir_for(args.workdir / name, settings)
        if not (settings.paths.store_dir / "chroma.sqlite3").exists():
            from rich.console import Console

            ingest_corpus(settings, args.workdir / name / "corpus", Console(stderr=True))
        sets.append((name, settings.paths.store_dir, [q.question for q in questions]))
    return sets


class CheckSpy:
    """Records, for each answerability check, its prompt tokens, how many were already in the model's cache
    (as the model reports them) and how long the check took (the prompt's prefill)."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self.last: dict[str, Any] = {}
        self._check = llm.answerability
        llm.answerability = self

    def __call__(self, prompt: Any, cancel: Any = None) -> float | None:
        start = time.perf_counter()
        score = self._check(prompt, cancel)
        seconds = time.perf_counter() - start
        self.last = {"tokens": prompt.tokens, "cached": self.llm.last_cached_tokens, "seconds": seconds}
        return score


def raw_prefill(llama: Any, tokens: list[int], cached: int) -> float:
    """Tokens/s of raw llama-cpp-python evaluating ``tokens`` after the same ``cached`` prefix."""
    llama.reset()
    llama.eval(tokens[: max(cached, 1)])
    start = time.perf_counter()
    llama.eval(tokens[max(cached, 1) :])
    return (len(tokens) - max(cached, 1)) / (time.perf_counter() - start)


def raw_decode(llm: Any, answer: Any, count: int) -> float | None:
    """Tokens/s of raw greedy decoding (one token at a time) of ``count`` tokens after the first, under the
    same grammar, for the prompt ``answer`` was written from (what the cache lacks of it is evaluated before
    the first token: only decoding is timed)."""
    from rag.answering.quotes import answer_grammar
    from rag.llm import compile_grammar

    prompt = llm.last_prompt
    llama = llm.llama
    llama.draft_model = None
    grammar = compile_grammar(answer_grammar([s.passage.text for s in answer.sources]))
    times = []
    for chunk in llama.create_completion(
        prompt=prompt.tokens, max_tokens=count + 1, temperature=0.0, repeat_penalty=1.0, grammar=grammar, stream=True
    ):
        times.append(time.perf_counter())
        del chunk
    if len(times) < count + 1:
        return None
    return count / (times[count] - times[0])


def run_config(name: str, levers: dict[str, Any], sets: list[tuple[str, Path, list[str]]]) -> dict[str, Any]:
    from rag.answering.answer import Answerer
    from rag.llm.local import load_local
    from rag.search.retrieval import build_retriever
    from rag.settings import load_settings

    settings = load_settings()
    settings.llm = settings.llm.model_copy(update=levers)
    llm = load_local(settings)
    spy = CheckSpy(llm)
    rows = []
    for set_name, store, questions in sets:
        set_settings = settings.model_copy(deep=True)
        set_settings.paths.store_dir = store
        answerer = Answerer(set_settings, build_retriever(set_settings), llm)
        for question in questions:
            spy.last = {}
            answer = answerer.answer(question)
            t = answer.timings
            row: dict[str, Any] = {
                "set": set_name,
                "question": question,
                "text": answer.display_text,
                "found": answer.found,
                "retrieval_ms": t.retrieval_ms,
                "translate_ms": t.translate_ms or 0.0,
                "prompt_tokens": t.prompt_tokens,
            }
            # what came before the model's first token: a rewritten follow-up, a translation, the wait, retrieval
            before = (t.rewrite_ms or 0.0) + (t.translate_ms or 0.0) + t.queue_ms + t.retrieval_ms
            if t.first_token_ms is not None:
                row["first_visible_ms"] = before + t.first_token_ms
            if spy.last:
                evaluated = len(spy.last["tokens"]) - max(spy.last["cached"], 1)
                row["cached_tokens"] = spy.last["cached"]
                row["prefill_tps"] = evaluated / spy.last["seconds"]
                row["raw_prefill_tps"] = raw_prefill(llm.llama, spy.last["tokens"], spy.last["cached"])
            if t.answer_start_ms is not None and t.quote_pieces > 0:
                row["first_word_ms"] = before + t.answer_start_ms
                row["quote_tokens"] = t.quote_pieces
                row["quote_tps"] = t.quote_pieces / ((t.answer_start_ms - t.first_token_ms) / 1000)
                # after the raw prefill above: the cache holds the prompt, as ours left it for the next question
                row["raw_quote_tps"] = raw_decode(llm, answer, t.quote_pieces)
            rows.append(row)
            print(json.dumps({"config": name, **{k: v for k, v in row.items() if k != "text"}}, ensure_ascii=False))
    llm.llama.close()
    return {"config": name, "levers": levers, "rows": rows}


def cli_first_token(question: str, *flags: str, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Seconds from starting `python -m rag ask` to the first byte of the answer on its stdout, and to its end."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rag", "ask", *flags, question],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    assert proc.stdout is not None
    proc.stdout.read(1)
    first = time.perf_counter() - start
    proc.stdout.read()
    proc.wait()
    return first, time.perf_counter() - start


def cli_figures(rounds: int = 2) -> dict[str, Any]:
    """`sourcier ask` with no server running, and with `sourcier serve` running (warmed by another question,
    so that no answer comes from the server's cache): the first answer byte and the end, p50 over ``rounds``
    sample questions."""
    import signal
    import subprocess
    import urllib.request

    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    with socket_port() as port:
        env["SOURCIER_SERVER__API_PORT"] = str(port)
    questions = SAMPLE_QUESTIONS[1 : 1 + rounds]
    alone = [cli_first_token(question, "--no-server", env=env) for question in questions]
    server = subprocess.Popen(
        [sys.executable, "-m", "rag", "serve", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1).read()
                break
            except OSError:
                time.sleep(0.5)
        cli_first_token(SAMPLE_QUESTIONS[0], env=env)  # the server loads its models at its first question
        served = [cli_first_token(question, env=env) for question in questions]
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
    figures = {
        "cli_first_answer_byte_s_no_server": statistics.median(a for a, _ in alone),
        "cli_done_s_no_server": statistics.median(b for _, b in alone),
        "cli_first_answer_byte_s_with_server": statistics.median(a for a, _ in served),
        "cli_done_s_with_server": statistics.median(b for _, b in served),
    }
    print(json.dumps(figures), flush=True)
    return figures


class socket_port:
    """A free TCP port on 127.0.0.1 (closed again before use)."""

    def __enter__(self) -> int:
        import socket

        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        return self._sock.getsockname()[1]

    def __exit__(self, *exc: object) -> None:
        self._sock.close()


def p50(rows: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in rows if r.get(key) is not None]
    return percentile(values, 50) if values else None


def summary(result: dict[str, Any], reference: dict[str, Any]) -> dict[str, Any]:
    rows = result["rows"]
    same = sum(a["text"] == b["text"] for a, b in zip(rows, reference["rows"], strict=True))
    ratio = [r["prefill_tps"] / r["raw_prefill_tps"] for r in rows if r.get("raw_prefill_tps")]
    quote = [r["quote_tps"] / r["raw_quote_tps"] for r in rows if r.get("raw_quote_tps")]
    return {
        "config": result["config"],
        "questions": len(rows),
        "answered": sum(r["found"] for r in rows),
        "retrieval_p50_ms": p50(rows, "retrieval_ms"),
        "translate_p50_ms": p50(rows, "translate_ms"),
        "first_visible_p50_ms": p50(rows, "first_visible_ms"),
        "first_word_p50_ms": p50(rows, "first_word_ms"),
        "prompt_tokens_p50": p50(rows, "prompt_tokens"),
        "cached_tokens_p50": p50(rows, "cached_tokens"),
        "prefill_tps_p50": p50(rows, "prefill_tps"),
        "raw_prefill_tps_p50": p50(rows, "raw_prefill_tps"),
        "prefill_ours_over_raw": statistics.median(ratio) if ratio else None,
        "quote_tps_p50": p50(rows, "quote_tps"),
        "raw_quote_tps_p50": p50(rows, "raw_quote_tps"),
        "quote_ours_over_raw": statistics.median(quote) if quote else None,
        "identical_to_first": f"{same}/{len(rows)}",
    }


def print_table(summaries: list[dict[str, Any]]) -> None:
    def cell(value: Any) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"
        return str(value)

    keys = [k for k in summaries[0] if k != "config"]
    print("| figure | " + " | ".join(s["config"] for s in summaries) + " |")
    print("|---|" + "---|" * len(summaries))
    for key in keys:
        print(f"| {key} | " + " | ".join(cell(s[key]) for s in summaries) + " |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=len(SAMPLE_QUESTIONS), help="sample questions (up to 6)")
    ap.add_argument("--piaf", type=int, default=30)
    ap.add_argument("--covid", type=int, default=30)
    ap.add_argument("--configs", nargs="+", choices=list(CONFIGS), default=["baseline", "defaults"])
    ap.add_argument("--workdir", type=Path, default=ROOT / "eval-runs", help="the evaluation sets' work folder")
    ap.add_argument("--out", type=Path, help="write every row and the summaries as JSON here")
    ap.add_argument("--cli", type=int, default=0, help="`sourcier ask` timed on N questions, without and with a server")
    args = ap.parse_args()
    print(f"# {cpu()}", flush=True)
    if args.cli:
        cli_figures(args.cli)
    sets = question_sets(args)
    results = [run_config(name, CONFIGS[name], sets) for name in args.configs]
    summaries = [summary(r, results[0]) for r in results]
    for s in summaries:
        print(json.dumps(s, ensure_ascii=False))
    print_table(summaries)
    if args.out:
        args.out.write_text(json.dumps({"cpu": cpu(), "results": results, "summaries": summaries}, indent=1))


if __name__ == "__main__":
    main()
