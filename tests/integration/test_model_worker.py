"""The local GGUF in its worker process (issue 30), with the real small model and real crashes: signals sent to
the real worker process (SIGSEGV, SIGKILL, SIGSTOP), never a mock.

- the worker writes exactly what the model in this process writes (greedy, with and without a grammar);
- a crash fails the one request it was answering, with the signal named, and the next is answered;
- a cancel frees the model within a tenth of a second, during generation or inside a long prompt;
- a worker that does not stop (stopped by SIGSTOP) is replaced after ``llm.worker_cancel_s``;
- no worker outlives its model object, nor a parent killed with SIGKILL.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from devkit.models import smollm_path
from rag.answering.quotes import answer_grammar
from rag.errors import ModelCrashError, ModelFileError
from rag.llm import load_llm, load_local
from rag.llm.turns import Cancellation
from rag.llm.worker import WorkerLLM
from rag.settings import Settings
from tests.conftest import REPO

pytestmark = pytest.mark.integration

PASSAGES = ["The storage outage lasted 47 minutes.", "Tuvalu", "No data was lost, and no write failed."]


def small_settings(**llm) -> Settings:
    s = Settings()
    s.llm.model_path = smollm_path()
    s.llm.temperature = 0.0
    for key, value in llm.items():
        setattr(s.llm, key, value)
    return s


def runners() -> list[psutil.Process]:
    """This test process's model workers still running."""
    found = []
    for p in psutil.Process().children(recursive=True):
        try:
            if "rag.llm.runner" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                found.append(p)
        except psutil.NoSuchProcess:
            pass
    return found


@pytest.fixture
def model() -> Iterator[WorkerLLM]:
    llm = load_llm(small_settings())
    assert isinstance(llm, WorkerLLM)
    try:
        yield llm
    finally:
        llm.close()
        assert not runners(), "a model worker outlived its model"


def prompt_for(llm, question: str, words: int = 0):
    filler = " ".join(["The report repeats its findings in full detail."] * words)
    content = f"{filler}\n{question}".strip()
    return llm.prompter.render([{"role": "user", "content": content}])


def test_the_worker_writes_what_the_model_in_this_process_writes():
    settings = small_settings()
    inline = load_local(settings)
    worker = load_llm(settings)
    try:
        for question in ("Name three colours.", "How long did the outage last? Quote the passage."):
            p_inline, p_worker = prompt_for(inline, question), prompt_for(worker, question)
            assert p_inline.tokens == p_worker.tokens  # the vocabulary alone renders the same prompt
            for grammar in (None, answer_grammar(PASSAGES)):
                expected = "".join(inline.stream(p_inline, max_tokens=48, grammar=grammar))
                assert "".join(worker.stream(p_worker, max_tokens=48, grammar=grammar)) == expected
            assert worker.answerability(p_worker) == pytest.approx(inline.answerability(p_inline), abs=1e-6)
        assert worker.n_ctx == inline.n_ctx
    finally:
        worker.close()


def test_a_segfault_fails_the_answer_it_was_writing_and_the_next_is_answered(model):
    prompt = prompt_for(model, "Describe the weather of every season in detail.")
    first_pid = model.process.pid
    pieces = model.stream(prompt, max_tokens=300)
    assert next(pieces)
    os.kill(first_pid, signal.SIGSEGV)
    with pytest.raises(
        ModelCrashError, match=r"the model process stopped: SIGSEGV \(Segmentation fault\); it is being restarted"
    ):
        list(pieces)
    t0 = time.perf_counter()
    assert "".join(model.stream(prompt, max_tokens=12))  # the next request waits for the new worker
    print(f"\ncrash to next answer (12 tokens): {time.perf_counter() - t0:.2f} s")
    state = model.process_state()
    assert state["state"] == "ready" and state["restarts"] == 1 and state["crashes"] == 1
    assert state["last_crash"]["reason"].startswith("SIGSEGV") and state["last_crash"]["pid"] == first_pid
    assert state["pid"] != first_pid and not psutil.pid_exists(first_pid)
    assert not model.activity.state().busy


def test_a_kill_during_the_answerability_check_fails_that_check_only(model):
    prompt = prompt_for(model, "Is the answer in the passages?")
    pid = model.process.pid
    os.kill(pid, signal.SIGSTOP)  # the request is surely in flight when the kill comes
    outcome: list[BaseException | float | None] = []

    def check() -> None:
        try:
            outcome.append(model.answerability(prompt))
        except BaseException as exc:
            outcome.append(exc)

    thread = threading.Thread(target=check)
    thread.start()
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    thread.join(30)
    assert isinstance(outcome[0], ModelCrashError) and "SIGKILL (Killed): out of memory, or killed" in str(outcome[0])
    assert 0.0 <= model.answerability(prompt) <= 1.0


def hold_wait(model, cancel_at: float) -> float:
    """Seconds from ``cancel_at`` until another generation gets the model."""
    with model.activity.hold():
        return time.perf_counter() - cancel_at


def test_a_cancel_frees_the_model_within_a_tenth_of_a_second(model):
    prompt = prompt_for(model, "Describe the weather of every season in detail.")
    pid = model.process.pid
    cancel = Cancellation()
    pieces = model.stream(prompt, max_tokens=400, cancel=cancel)
    next(pieces)
    t0 = time.perf_counter()
    cancel.cancel()
    assert list(pieces) == []
    during_generation = hold_wait(model, t0)
    # Inside a long prompt's evaluation: llama.cpp's abort callback, in the worker, sees the cancel.
    long_prompt = prompt_for(model, "Summarise.", words=300)
    cancel = Cancellation()
    timer = threading.Timer(0.15, cancel.cancel)
    timer.start()
    t0 = time.perf_counter()
    assert list(model.stream(long_prompt, max_tokens=20, cancel=cancel)) == []
    inside_prompt = time.perf_counter() - t0 - 0.15
    free = f"{during_generation * 1000:.1f} ms (generating), {inside_prompt * 1000:.1f} ms (prompt)"
    print(f"\nmodel free after a cancel: {free}")
    assert during_generation <= 0.1 and inside_prompt <= 0.1
    assert model.process.pid == pid  # a cancel is not a crash


def test_a_worker_that_does_not_stop_is_replaced(tmp_path):
    model = load_llm(small_settings(worker_cancel_s=0.5))
    try:
        prompt = prompt_for(model, "Describe the weather of every season in detail.")
        pid = model.process.pid
        pieces = model.stream(prompt, max_tokens=400)
        next(pieces)
        os.kill(pid, signal.SIGSTOP)  # wedged: it will never answer the cancel
        t0 = time.perf_counter()
        pieces.close()
        waited = time.perf_counter() - t0
        assert 0.5 <= waited < 3, waited
        assert "".join(model.stream(prompt, max_tokens=8))
        assert model.process.pid != pid and not psutil.pid_exists(pid)
        assert model.process_state()["last_crash"]["reason"] == "it did not stop a cancelled generation"
    finally:
        model.close()
    assert not runners()


PARENT = """
import sys, time
from rag.llm import load_llm
from tests.integration.test_model_worker import small_settings
llm = load_llm(small_settings())
print(llm.process.pid, flush=True)
time.sleep(600)
"""


def test_the_worker_exits_when_its_parent_is_killed():
    parent = subprocess.Popen([sys.executable, "-c", PARENT], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        assert psutil.pid_exists(pid)
        parent.kill()
        parent.wait(10)
        deadline = time.monotonic() + 5
        while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
            assert time.monotonic() < deadline, "the worker outlived its parent"
            time.sleep(0.05)
    finally:
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def test_a_model_that_cannot_load_is_an_error_and_leaves_no_process(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + os.urandom(4096))
    settings = small_settings()
    settings.llm.model_path = Path(broken)
    with pytest.raises(ModelFileError, match="broken.gguf"):
        load_llm(settings)
    assert not runners()


def test_prompts_aside_run_in_the_workers_second_context(model):
    """The worker's answers keep their prompt cached across a prompt aside (a question's translation)."""
    answer = prompt_for(model, "How long did the outage last?", words=20)
    side = prompt_for(model, "Translate: combien de temps?")
    list(model.stream(answer, max_tokens=2))
    aside = model.aside()
    assert aside is not model and aside.aside() is aside and model.aside() is aside and aside.activity is model.activity
    list(aside.stream(side, max_tokens=8))
    assert aside.last_cached_tokens is not None and model.last_cached_tokens is not None
    list(model.stream(answer, max_tokens=2))
    assert model.last_cached_tokens >= len(answer.tokens) - 1  # the translation did not evict it
    list(model.stream(side, max_tokens=8))  # the same prompt in the main context evicts it
    list(model.stream(answer, max_tokens=2))
    assert model.last_cached_tokens < len(answer.tokens) // 2
    long = prompt_for(model, "Say yes.", words=130)  # longer than the context aside: the main one writes it
    assert len(long.tokens) > model.settings.llm.aside_n_ctx
    assert "".join(aside.stream(long, max_tokens=4)) == "".join(model.stream(long, max_tokens=4))
    assert model.last_cached_tokens >= len(long.tokens) - 1
