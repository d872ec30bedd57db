"""The model worker process: the GGUF loaded and run for one parent, which talks to it over a socket.

Started by :mod:`rag.llm.worker` as ``python -m rag.llm.runner FD`` (FD: its end of a socket pair), as Ollama
runs llama.cpp in a runner process: if llama.cpp crashes here, only this process dies, and its parent fails
the one request it was answering and starts another. Messages are pickled tuples:

- from the parent: ``("load", settings, model_path)`` first, then ``("stream", id, prompt, max_tokens,
  decoding, grammar, aside)`` (``aside``: in the model's second context, ``LocalLLM.aside``),
  ``("answerability", id, prompt)``, ``("cancel", id)``, ``("stop",)``;
- to the parent: ``("ready", {"n_ctx": ..., "pid": ...})`` or ``("failed", error)`` once, then per request
  ``("piece", id, text)``... ``("end", id)``, or ``("score", id, value)``, or ``("error", id, error)``.

A reader thread takes the parent's messages while the main thread generates, so a cancel reaches a running
generation at once (llama.cpp's abort callback sees it inside a decode). When the parent goes away (its end
of the socket closes), this process exits at once, whatever it was doing.
"""

from __future__ import annotations

import os
import pickle
import queue
import signal
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from rag.errors import SourcierError
from rag.llm.turns import Cancellation


def sendable(exc: BaseException) -> BaseException:
    """``exc`` itself when it survives pickling, else a RuntimeError with its words."""
    try:
        pickle.loads(pickle.dumps(exc))
        return exc
    except Exception:
        return RuntimeError(f"{type(exc).__name__}: {exc}")


class Runner:
    """Serves one loaded model's requests, one at a time, in the order they come."""

    def __init__(self, conn: Connection, llm: Any) -> None:
        self.conn = conn
        self.llm = llm
        self.requests: queue.Queue[tuple] = queue.Queue()
        self._guard = threading.Lock()
        self._running: tuple[int, Cancellation] | None = None
        self._cancelled_early: set[int] = set()

    def listen(self) -> None:
        """The reader thread: requests to the queue, cancels applied at once; exits the process when the
        parent is gone."""
        while True:
            try:
                message = self.conn.recv()
            except (EOFError, OSError):
                os._exit(0)  # the parent is gone: nobody to answer
            if message[0] == "cancel":
                self._cancel(message[1])
            else:
                self.requests.put(message)

    def _cancel(self, request: int) -> None:
        with self._guard:
            if self._running is not None and self._running[0] == request:
                self._running[1].cancel()
            else:
                self._cancelled_early.add(request)

    def serve(self) -> None:
        threading.Thread(target=self.listen, name="runner-reader", daemon=True).start()
        while True:
            message = self.requests.get()
            if message[0] == "stop":
                return
            kind, request, *args = message
            cancel = Cancellation()
            with self._guard:
                if request in self._cancelled_early:
                    cancel.cancel()
                # ids only grow: a cancel for an earlier request (one that ended first) will never be needed
                self._cancelled_early = {r for r in self._cancelled_early if r > request}
                self._running = (request, cancel)
            try:
                if kind == "stream":
                    prompt, max_tokens, decoding, grammar, aside = args
                    llm = self.llm.aside() if aside else self.llm
                    for n, piece in enumerate(llm.stream(prompt, max_tokens, decoding, cancel, grammar)):
                        if n == 0:
                            self.conn.send(("cached", request, llm.last_cached_tokens))
                        self.conn.send(("piece", request, piece))
                    self.conn.send(("end", request))
                elif kind == "answerability":
                    score = self.llm.answerability(args[0], cancel)
                    self.conn.send(("cached", request, self.llm.last_cached_tokens))
                    self.conn.send(("score", request, score))
                else:
                    unknown = SourcierError(f"the model worker got an unknown request {kind!r}")
                    self.conn.send(("error", request, unknown))
            except Exception as exc:  # the request fails, the worker stays
                self.conn.send(("error", request, sendable(exc)))
            finally:
                with self._guard:
                    self._running = None


def main(argv: list[str]) -> int:
    from rag.llm.local import load_local

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the parent, which stops this process
    conn = Connection(int(argv[0]))
    try:
        _, settings, model_path = conn.recv()
    except (EOFError, OSError):
        return 0
    try:
        llm = load_local(settings, model_path)
    except Exception as exc:
        conn.send(("failed", sendable(exc)))
        return 1
    conn.send(("ready", {"n_ctx": llm.n_ctx, "pid": os.getpid()}))
    Runner(conn, llm).serve()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
