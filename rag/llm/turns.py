"""Whose turn it is at the model, since when, and how to make them stop.

A :class:`Cancellation` is one request's "stop now". Whoever ends the request (the client went away, its
timeout passed, the server is shutting down) calls ``cancel()``; the work checks it between steps (a token,
a line from an LLM server); a local model's decode checks it from inside llama.cpp, and a read from an LLM
server is cut short by a callback that shuts its socket down.

A :class:`ModelActivity` is the model's side: with ``exclusive`` it lets one generation run at a time (a
local GGUF has one context) and the others wait their turn in order of arrival, told how many are ahead of
them, giving up the wait as soon as they are cancelled;
either way it records what runs, since when, and the last sign of progress, so a health check can tell a
busy model from a wedged one.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

WAIT_POLL_S = 0.05  # how often a generation waiting for the model looks at its cancellation


class Cancellation:
    """Set once, never reset; thread-safe. The work checks it between steps (tokens, lines of a stream);
    what blocks in between registers a callback that unblocks it (run once, in the cancelling thread)."""

    def __init__(self) -> None:
        self._event = threading.Event()
        self._guard = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    @property
    def cancelled(self) -> bool:
        return self._event.is_set()

    def cancel(self) -> None:
        with self._guard:
            if self._event.is_set():
                return
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            with contextlib.suppress(Exception):  # unblocking is best effort: the flag is what counts
                callback()

    def on_cancel(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Run ``callback`` when cancelled (at once if already); returns a function that unregisters it."""
        with self._guard:
            if not self._event.is_set():
                self._callbacks.append(callback)
                return lambda: self._forget(callback)
        callback()
        return lambda: None

    def _forget(self, callback: Callable[[], None]) -> None:
        with self._guard:
            if callback in self._callbacks:
                self._callbacks.remove(callback)


def cancelled(cancel: Cancellation | None) -> bool:
    return cancel is not None and cancel.cancelled


class Hold:
    """One generation's use of the model; ``progress()`` on every token keeps it from looking stuck."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.since = self.last_progress = clock()

    def progress(self) -> None:
        self.last_progress = self._clock()


@dataclass(frozen=True)
class ActivityState:
    """A snapshot for health checks."""

    running: int  # generations using the model now
    waiting: int  # generations queued for it (exclusive models only)
    busy_s: float | None  # how long the oldest running generation has held it
    quiet_s: float | None  # longest time any running generation has gone without progress

    @property
    def busy(self) -> bool:
        return self.running > 0

    def as_dict(self) -> dict[str, object]:
        rounded = lambda x: None if x is None else round(x, 2)  # noqa: E731
        return {
            "busy": self.busy,
            "running": self.running,
            "waiting": self.waiting,
            "busy_s": rounded(self.busy_s),
            "since_progress_s": rounded(self.quiet_s),
        }


class ModelActivity:
    """The model's generations: one at a time when ``exclusive``, in order of arrival, each tracked while it
    runs."""

    def __init__(self, exclusive: bool, clock: Callable[[], float] = time.monotonic) -> None:
        self._exclusive = exclusive
        self._guard = threading.Lock()
        self._changed = threading.Condition(self._guard)
        self._clock = clock
        self._holds: set[Hold] = set()
        self._queue: list[object] = []  # waiting generations, first come first served
        self._taken = False

    @contextmanager
    def hold(
        self, cancel: Cancellation | None = None, on_wait: Callable[[int], None] | None = None
    ) -> Iterator[Hold | None]:
        """The model for one generation, after the ones before it; ``None`` when cancelled while waiting.

        While it waits, ``on_wait(n)`` is called with the number of generations ahead of it (the one running
        included) each time that number changes. Released when the block ends in any way (finished, closed
        early, an exception).
        """
        if not self._take_turn(cancel, on_wait):
            yield None
            return
        hold = Hold(self._clock)
        with self._guard:
            self._holds.add(hold)
        try:
            yield hold
        finally:
            with self._changed:
                self._holds.discard(hold)
                if self._exclusive:
                    self._taken = False
                    self._changed.notify_all()

    def _take_turn(self, cancel: Cancellation | None, on_wait: Callable[[int], None] | None) -> bool:
        if not self._exclusive:
            return not cancelled(cancel)
        ticket = object()
        reported = None
        with self._changed:
            self._queue.append(ticket)
        try:
            while True:
                with self._changed:
                    if cancelled(cancel):
                        return False
                    ahead = self._queue.index(ticket) + int(self._taken)
                    if ahead == 0:
                        self._taken = True
                        return True
                    if ahead == reported or on_wait is None:
                        self._changed.wait(WAIT_POLL_S)
                        continue
                reported = ahead
                on_wait(ahead)  # outside the lock: the caller may draw on a page
        finally:
            with self._changed:
                self._queue.remove(ticket)
                self._changed.notify_all()

    def state(self) -> ActivityState:
        now = self._clock()
        with self._guard:
            holds, waiting = list(self._holds), len(self._queue)
        if not holds:
            return ActivityState(0, waiting, None, None)
        return ActivityState(
            running=len(holds),
            waiting=waiting,
            busy_s=max(now - h.since for h in holds),
            quiet_s=max(now - h.last_progress for h in holds),
        )
