"""The local GGUF run in a worker process of its own, supervised: a crash of llama.cpp costs one request.

llama.cpp is native code: a segfault, running out of memory or a ``kill -9`` ends the process it runs in, and
Python cannot catch any of it. So, as Ollama runs its runner, the model runs in a child process
(:mod:`rag.llm.runner`) and this process keeps what must survive: the queue of generations
(``activity``), the prompter (the GGUF's vocabulary and template, loaded without the weights, so prompts
are rendered and counted exactly here), conversations and the store. When the worker dies, the request it
was answering gets a :class:`~rag.errors.ModelCrashError` ("the model process stopped: SIGSEGV
(Segmentation fault); it is being restarted"), a new worker starts at once, and the next request waits for
it. Cancellation crosses the boundary: a cancelled request sends the worker a cancel, which llama.cpp's
abort callback sees inside a decode, and the model is free again when the worker says it has stopped (a
worker that does not stop within ``llm.worker_cancel_s`` is killed and replaced).
"""

from __future__ import annotations

import contextlib
import copy
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from rag.errors import ModelCrashError, ModelFileError
from rag.llm.base import ChatModel, Prompt
from rag.llm.turns import Cancellation, ModelActivity, cancelled
from rag.settings import LLMSettings, Settings

POLL_S = 0.05  # how often a waiting request looks at its cancellation and at the worker's life
START_TIMEOUT_S = 600.0  # a worker that neither loads nor fails in this long is killed


def crash_reason(returncode: int | None) -> str:
    """How a process ended, in words: "SIGSEGV (Segmentation fault)", "exit status 3"."""
    if returncode is None:
        return "it stopped answering"
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode)
        except ValueError:
            return f"signal {-returncode}"
        words = signal.strsignal(sig) or ""
        hint = ": out of memory, or killed" if sig == signal.SIGKILL else ""
        return f"{sig.name} ({words}){hint}"
    return f"exit status {returncode}"


@dataclass(eq=False)
class _Child:
    """One started worker: its process and our end of its socket."""

    proc: subprocess.Popen
    conn: Connection
    n_ctx: int = 0

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=10)
        self.conn.close()


def _stop_children(children: set[_Child]) -> None:
    """Stops every worker still running (the model object was dropped, or this process is exiting)."""
    for child in list(children):
        with contextlib.suppress(OSError):
            child.conn.send(("stop",))
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=2)
        child.kill()
        children.discard(child)


class WorkerProcess:
    """The model's worker process, started again after it dies; one request at a time (the caller's
    ``ModelActivity`` sees to that), answered as a stream of messages."""

    def __init__(self, settings: Settings, model_path: Path) -> None:
        self.settings = settings
        self.model_path = model_path
        self._ids = itertools.count(1)
        self._guard = threading.Lock()  # the state below
        self._send_guard = threading.Lock()  # a cancel is sent from the cancelling thread
        self._child: _Child | None = None
        self._children: set[_Child] = set()
        self._ready = threading.Event()
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self.restarts = 0
        self.crashes = 0
        self.last_crash: dict[str, Any] | None = None
        self._finalizer = weakref.finalize(self, _stop_children, self._children)
        self._start()

    # -- the process --------------------------------------------------------------------------------

    def _spawn(self) -> _Child:
        """A new worker with the model loaded; raises the worker's load error, or a ModelFileError."""
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        root = str(Path(__file__).resolve().parents[2])  # the worker imports this very rag package
        env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "rag.llm.runner", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,  # llama.cpp's words go to stderr; stdout may be a --json reply
                env=env,
            )
        finally:
            theirs.close()
        child = _Child(proc, Connection(ours.detach()))
        self._children.add(child)
        try:
            child.conn.send(("load", self.settings, self.model_path))
            deadline = time.monotonic() + START_TIMEOUT_S
            while not child.conn.poll(POLL_S):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise EOFError
            message = child.conn.recv()
        except (EOFError, OSError):
            self._forget(child)
            raise ModelFileError(
                f"the model process stopped while loading {self.model_path.name}: {crash_reason(proc.poll())}"
            ) from None
        if message[0] != "ready":
            self._forget(child)
            raise message[1]
        child.n_ctx = int(message[1]["n_ctx"])
        return child

    def _forget(self, child: _Child) -> None:
        child.kill()
        self._children.discard(child)

    def _start(self) -> None:
        """Starts a worker now (the first one: its load error is the caller's)."""
        child = self._spawn()
        self._n_ctx = child.n_ctx
        with self._guard:
            self._child = child
            self._ready.set()

    def _restart_soon(self) -> None:
        """Starts a new worker in the background, unless one is starting already."""
        with self._guard:
            if self._starting is not None and self._starting.is_alive():
                return
            self._start_error = None
            self._starting = threading.Thread(target=self._restart, name="model-worker-restart", daemon=True)
            self._starting.start()

    def _restart(self) -> None:
        try:
            child = self._spawn()
        except BaseException as exc:  # the next request says it, and tries again
            with self._guard:
                self._start_error = exc
                self._ready.set()
            return
        with self._guard:
            self._child = child
            self.restarts += 1
            self._ready.set()

    def _current(self, cancel: Cancellation | None) -> _Child | None:
        """The running worker, after waiting for a restart in progress; None when cancelled meanwhile."""
        while not self._ready.wait(POLL_S):
            if cancelled(cancel):
                return None
        with self._guard:
            child = self._child
        if child is None:  # the last restart failed: once more, in this request, which gets its error
            self._start()
            with self._guard:
                self._start_error = None
                child = self._child
        return child

    def _crashed(self, child: _Child) -> ModelCrashError:
        """Records the worker's death, starts its successor, and says so for the request that met it."""
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.proc.wait(timeout=5)
        reason = crash_reason(child.proc.poll())
        self._replace(child, reason, crashed=True)
        return ModelCrashError(f"the model process stopped: {reason}; it is being restarted")

    def _replace(self, child: _Child, reason: str, crashed: bool) -> None:
        """``child`` is done with (dead, or wedged): recorded, killed, and a successor started."""
        with self._guard:
            if self._child is not child:
                return  # replaced already
            self._child = None
            self._ready.clear()  # from now on, requests wait for the successor
            self.crashes += int(crashed)
            self.last_crash = {"reason": reason, "at": time.time(), "pid": child.proc.pid}
        self._forget(child)
        self._restart_soon()

    # -- requests -----------------------------------------------------------------------------------

    def request(self, kind: str, args: tuple, cancel: Cancellation | None) -> Iterator[tuple]:
        """The worker's messages for one request (pieces, then nothing more; or its score), until it ends.
        Closed early or cancelled, the worker is told to stop and this returns once it has (or once it is
        replaced, if it does not stop within ``llm.worker_cancel_s``)."""
        child = self._current(cancel)
        if child is None:
            return
        request = next(self._ids)
        over = False
        try:
            self._send(child, (kind, request, *args))
            forget = cancel.on_cancel(lambda: self._send(child, ("cancel", request))) if cancel else (lambda: None)
            try:
                while True:
                    message = self._receive(child)
                    if message[1] != request:
                        continue  # the tail of a request abandoned earlier
                    if message[0] == "end":
                        over = True
                        return
                    if message[0] == "error":
                        over = True
                        raise message[2]
                    over = message[0] == "score"
                    yield message
                    if over:
                        return
            finally:
                forget()
        finally:
            if not over and child is self._child:
                self._stop_request(child, request)

    def _send(self, child: _Child, message: tuple) -> None:
        try:
            with self._send_guard:
                child.conn.send(message)
        except OSError:
            pass  # a dead worker: its reader sees it

    def _receive(self, child: _Child) -> tuple:
        try:
            while not child.conn.poll(POLL_S):
                if child.proc.poll() is not None:
                    raise EOFError
            return child.conn.recv()
        except (EOFError, OSError):
            raise self._crashed(child) from None

    def _stop_request(self, child: _Child, request: int) -> None:
        """A request left before its end: the worker stops it, and its last messages are read."""
        self._send(child, ("cancel", request))
        deadline = time.monotonic() + self.settings.llm.worker_cancel_s
        try:
            while time.monotonic() < deadline:
                if child.conn.poll(POLL_S):
                    message = child.conn.recv()
                    if message[1] == request and message[0] in ("end", "error", "score"):
                        return
                elif child.proc.poll() is not None:
                    raise EOFError
        except (EOFError, OSError):
            self._crashed(child)
            return
        self._replace(child, "it did not stop a cancelled generation", crashed=False)  # wedged in native code

    # -- state --------------------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """The context window (the same for every worker: same file, same settings)."""
        return self._n_ctx

    @property
    def pid(self) -> int | None:
        child = self._child
        return child.proc.pid if child is not None else None

    def state(self) -> dict[str, Any]:
        """For health checks: the worker's pid and state, its restarts, and its last crash."""
        with self._guard:
            child, error = self._child, self._start_error
        state = "ready" if child is not None else "restart failed" if error is not None else "restarting"
        report: dict[str, Any] = {"pid": child.proc.pid if child else None, "state": state}
        report |= {"restarts": self.restarts, "crashes": self.crashes}
        if self.last_crash is not None:
            crash = dict(self.last_crash)
            crash["seconds_ago"] = round(time.time() - crash.pop("at"), 1)
            report["last_crash"] = crash
        if error is not None:
            report["error"] = str(error)
        return report

    def close(self) -> None:
        """Stops the worker (also done when this object is dropped, or at exit)."""
        self._finalizer()


class WorkerLLM(ChatModel):
    """A local GGUF answering from its worker process, as :class:`~rag.llm.local.LocalLLM` would in this one:
    the same prompts (rendered here with the GGUF's template), the same outputs, one generation at a time."""

    def __init__(self, settings: Settings, model_path: Path, prompter: Any, process: WorkerProcess) -> None:
        self.settings = settings
        self.model_path = model_path
        self.prompter = prompter
        self.process = process
        self.last_prompt: Prompt | None = None
        self.activity = ModelActivity(exclusive=True)
        self.beside = False  # this object's prompts go to the worker's context aside (see ``aside``)
        self._aside: WorkerLLM | None = None

    def aside(self) -> WorkerLLM:
        """This model, its prompts run in the worker's second context (:meth:`LocalLLM.aside
        <rag.llm.local.LocalLLM.aside>`); turns shared with the answers. Made once, like the context."""
        if self._aside is None:
            other = copy.copy(self)
            other.beside, other.last_prompt, other.last_cached_tokens = True, None, None
            other._aside = other
            self._aside = other
        return self._aside

    @property
    def n_ctx(self) -> int:
        return self.process.n_ctx

    def describe(self) -> str:
        return f"the model {self.model_path.name}"

    def stream(
        self,
        prompt: Prompt,
        max_tokens: int | None = None,
        decoding: LLMSettings | None = None,
        cancel: Cancellation | None = None,
        grammar: str | None = None,
    ) -> Iterator[str]:
        """Text pieces as the worker writes them; nothing more once ``cancel`` is set. A crash of the worker is
        a ModelCrashError for this answer; the next one is answered by its successor."""
        with self.activity.hold(cancel) as hold:
            if hold is None:
                return
            self.last_prompt = prompt
            args = (_lean(prompt), max_tokens, decoding or self.settings.llm, grammar, self.beside)
            for message in self._replies("stream", args, cancel, hold):
                if cancelled(cancel):
                    return
                yield message[2]

    def answerability(self, prompt: Prompt, cancel: Cancellation | None = None) -> float | None:
        with self.activity.hold(cancel) as hold:
            if hold is None:
                return None
            for message in self._replies("answerability", (_lean(prompt),), cancel, hold):
                return message[2]
        return None

    def _replies(self, kind: str, args: tuple, cancel: Cancellation | None, hold: Any) -> Iterator[tuple]:
        """The worker's messages for one request, each one counted as progress; the cached-token count it
        reports before a prompt's evaluation is kept, not passed on."""
        for message in self.process.request(kind, args, cancel):
            hold.progress()
            if message[0] == "cached":
                self.last_cached_tokens = message[2]
            else:
                yield message

    def process_state(self) -> dict[str, Any] | None:
        return self.process.state()

    def close(self) -> None:
        self.process.close()


def _lean(prompt: Prompt) -> Prompt:
    """What the worker needs of a prompt: its tokens, stop strings and where its documents start."""
    return Prompt(text="", tokens=prompt.tokens, stop=prompt.stop, documents_from=prompt.documents_from)


def load_worker(settings: Settings, model_path: Path | None = None) -> WorkerLLM:
    """The GGUF (``model_path``, else the configured or packaged one) in a worker process, its prompter here
    (the vocabulary only). Heavy: call once and share."""
    from rag.llm.local import open_gguf, prompter_for
    from rag.models.gguf import resolve_model_path

    path = model_path or resolve_model_path(settings)
    vocabulary = open_gguf(path, settings, vocab_only=True)
    prompter = prompter_for(vocabulary, settings, path)  # a GGUF without a template is refused before a worker
    return WorkerLLM(settings, path, prompter, WorkerProcess(settings, path))
