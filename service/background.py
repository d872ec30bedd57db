"""``ingest.summaries``: each stored document's summary made ahead of the first request for it, while the
model has nothing else to do.

The server (page or API) runs one :class:`BackgroundSummaries` thread. It works only when no one has asked the
model anything for ``ingest.summaries_idle_s`` seconds and no generation holds or waits for the model; a request
that needs the model (:meth:`Service.model`) stops it at once, between two tokens or inside a prompt's
evaluation. What it had made of an unfinished summary is kept (each section's points are kept as they are
made), so it goes on from there at the next quiet moment, and a person who asks for that summary meanwhile gets
the kept sections for free.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Protocol

from rag.answering.summary import Summarizer, SummaryCache
from rag.llm.base import ChatModel
from rag.llm.turns import Cancellation
from rag.search.corpus import DocumentInfo

log = logging.getLogger(__name__)

POLL_S = 1.0  # how often the thread looks whether the model is free and a document needs a summary


class ModelOwner(Protocol):
    """What the thread needs of :class:`service.shared.Service`."""

    @property
    def summaries(self) -> SummaryCache | None: ...

    def model(self, path: None = None, background: bool = False) -> ChatModel: ...

    def loaded_model(self) -> ChatModel | None: ...

    def documents(self) -> list[DocumentInfo]: ...

    def summarizer(self, background: bool = False) -> Summarizer: ...


class BackgroundSummaries:
    def __init__(
        self, service: ModelOwner, idle_s: float, poll_s: float = POLL_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.service = service
        self.idle_s = idle_s
        self.poll_s = poll_s
        self._clock = clock
        self._last_request = clock()
        self._running: Cancellation | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done: dict[tuple[str, str], str] = {}  # (root, source) -> the version made (or that failed)
        self.made = 0  # summaries written by the model (not those kept from before)
        self.interrupted = 0  # summaries stopped by a request (taken up again later)
        self.failed = 0
        self._thread = threading.Thread(target=self._run, name="background-summaries", daemon=True)

    def start(self) -> BackgroundSummaries:
        self._thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        """Stops the thread (its summary in progress is cancelled: what it made is kept) and waits for it."""
        self._stop.set()
        self.requested()
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def requested(self) -> None:
        """Someone needs the model: the summary being made stops now, and none starts for ``idle_s``."""
        with self._lock:
            self._last_request = self._clock()
            if self._running is not None:
                self._running.cancel()

    def _quiet(self) -> bool:
        if self._clock() - self._last_request < self.idle_s:
            return False
        model = self.service.loaded_model()
        if model is None:
            return True
        state = model.activity.state()
        return not state.busy and state.waiting == 0

    def _next(self) -> DocumentInfo | None:
        for doc in self.service.documents():
            if self._done.get((doc.root, doc.source)) != doc.ingested_at:
                return doc
        return None

    def _run(self) -> None:
        while not self._stop.wait(self.poll_s):
            try:
                self._once()
            except Exception:  # the thread must outlive any one document or a store being rewritten
                log.exception("background summaries: this round failed; the next one tries again")

    def _once(self) -> None:
        if not self._quiet():
            return
        doc = self._next()
        if doc is None:
            return
        cancel = Cancellation()
        with self._lock:
            if self._stop.is_set() or self._clock() - self._last_request < self.idle_s:
                return
            self._running = cancel
        key = (doc.root, doc.source)
        try:
            summary = self.service.summarizer(background=True).summarize(doc, cancel=cancel)
        except Exception as exc:  # a document that cannot be summarised is not tried again until it changes
            self.failed += 1
            self._done[key] = doc.ingested_at
            log.warning("background summaries: %s was not summarised: %s", doc.source, exc)
            return
        finally:
            with self._lock:
                self._running = None
        if summary.cancelled:
            self.interrupted += 1
            return
        self._done[key] = doc.ingested_at
        if not summary.cached:
            self.made += 1
            log.info("background summaries: %s summarised (%.0f s)", doc.source, summary.seconds)
