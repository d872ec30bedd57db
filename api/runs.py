"""One answer per request, generated in a thread of its own and handed to the event loop piece by piece.

Why not let Starlette iterate the answer's generator in its thread pool: when a client goes away, the
request's task is cancelled between two ``next()`` calls and the generator (which holds the model) is left
suspended until the garbage collector finalizes it, possibly never. Here the request owns an
:class:`AnswerRun` and cancels it in a ``finally``, whatever ends the request (done, client gone, client
timeout, server shutdown, an error): the generation stops at the next token (or inside the current
decode), its thread closes the generator chain and the model is free for the next request.

The run's thread only produces; a slow reader does not hold the model: pieces wait in a queue.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from rag.answering.answer import Answer, AnswerStream
from rag.llm.turns import Cancellation

DISCONNECT_POLL_S = 0.25  # how often a waiting request looks whether its client is still there

_PIECE, _DONE, _ERROR = "piece", "done", "error"


class ClientGone(Exception):
    """The client disconnected before the answer was complete."""


class AnswerRun:
    """Generate ``stream`` in a daemon thread; read it with :meth:`pieces`; stop it with :meth:`cancel`."""

    def __init__(self, stream: AnswerStream, cancel: Cancellation) -> None:
        self.stream = stream
        self.cancellation = cancel
        self._queue: asyncio.Queue[tuple[str, object]] = asyncio.Queue()
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._produce, name="sourcier-answer", daemon=True)

    @property
    def answer(self) -> Answer | None:
        return self.stream.answer

    def start(self) -> AnswerRun:
        self._thread.start()
        return self

    def cancel(self) -> None:
        self.cancellation.cancel()

    def _produce(self) -> None:
        try:
            for piece in self.stream:
                if self.cancellation.cancelled:
                    break
                self._send(_PIECE, piece)
            self._send(_DONE, None)
        except BaseException as exc:  # handed to the request, which decides what the client sees
            self._send(_ERROR, exc)
        finally:
            self.stream.close()  # gives the model back, whatever ended the loop

    def _send(self, kind: str, value: object) -> None:
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, value))
        except RuntimeError:  # the event loop is gone (server stopped): nobody is listening any more
            self.cancel()

    async def pieces(self, disconnected: Callable[[], Awaitable[bool]]) -> AsyncIterator[str]:
        """The answer's pieces as they come; raises :class:`ClientGone` when ``disconnected()`` says so and
        the generation's own error if it failed. The run is cancelled when this iteration ends in any way."""
        getter: asyncio.Future[tuple[str, object]] | None = None  # kept across polls: no piece is ever lost
        try:
            checked = time.monotonic()
            while True:
                if getter is None:
                    getter = asyncio.ensure_future(self._queue.get())
                done, _ = await asyncio.wait({getter}, timeout=DISCONNECT_POLL_S)
                kind, value = getter.result() if done else ("", None)
                if done:
                    getter = None
                if not done or time.monotonic() - checked >= DISCONNECT_POLL_S:
                    checked = time.monotonic()
                    if await disconnected():
                        raise ClientGone()
                if kind == _PIECE:
                    yield str(value)
                elif kind == _DONE:
                    return
                elif kind == _ERROR:
                    assert isinstance(value, BaseException)
                    raise value
        finally:
            if getter is not None:
                getter.cancel()
            self.cancel()

    async def text(self, disconnected: Callable[[], Awaitable[bool]]) -> str:
        """The whole answer's text (a non-streamed request), with the same guarantees as :meth:`pieces`."""
        return "".join([piece async for piece in self.pieces(disconnected)])
