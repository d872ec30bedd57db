"""ingest.summaries (service.background): the server summarises its documents while the model is idle, stops the
moment a request needs the model, and goes on from the kept sections later; a real Chroma store, a fake model
that summarises each section by its pages' first sentences."""

from __future__ import annotations

import re
import time

import pytest

from devkit.pdfs import text_pdf
from rag.answering.summary import find_document
from rag.search.retrieval import Retriever
from service import Service
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor
from tests.unit.test_summary import OTHER, PAGES


class SectionLLM(FakeLLM):
    """Replies to a map prompt with each page's first sentence cited to that page (what the page check backs),
    ``piece_delay`` seconds a word."""

    def stream(self, prompt, max_tokens=None, decoding=None, cancel=None, grammar=None):
        pages = re.findall(r"\[page (\d+)\]\n(.+?\.)\s", prompt.messages[-1]["content"])
        self.replies = ["\n".join(f"- {sentence} (p. {page})" for page, sentence in pages) or "- Nothing. (p. 1)"]
        yield from super().stream(prompt, max_tokens, decoding, cancel, grammar)


def wait_until(condition, timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.01)
    return time.monotonic() - start


@pytest.fixture
def service(settings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour-notes.pdf").write_bytes(text_pdf(PAGES))
    (docs / "bibliotheque-horaires.pdf").write_bytes(text_pdf(OTHER))
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([docs])
    settings.ingest.summaries_idle_s = 0.3
    model = SectionLLM([], piece_delay=0.02)
    service = Service(settings, Retriever(ingestor.store, FakeEmbedder(), settings), lambda path: model)
    yield service
    service.stop_background()
    assert service.background is None or not service.background.alive  # the thread ends with the service


def test_idle_documents_are_summarised_in_the_background_and_then_asked_for_instantly(service):
    worker = service.start_background_summaries()
    wait_until(lambda: worker.made == 2, 30)
    model = service.loaded_model()
    asked = len(model.prompts)
    for name in ("harbour-notes.pdf", "bibliotheque-horaires.pdf"):
        summary = service.summarizer().summarize(find_document(service.retriever.corpus, name))
        assert summary.cached and summary.points
    assert len(model.prompts) == asked  # nothing was asked of the model again
    time.sleep(0.5)
    assert worker.made == 2 and len(model.prompts) == asked  # nothing is summarised twice


def test_a_request_for_the_model_stops_the_background_summary_at_once_and_it_goes_on_later(service):
    worker = service.start_background_summaries()
    wait_until(lambda: service.loaded_model() is not None and service.loaded_model().activity.state().busy, 30)
    model = service.model()  # a question arrives
    assert wait_until(lambda: not model.activity.state().busy, 5) < 0.3  # stopped within a word or two
    assert worker.interrupted == 1
    asked = len(model.prompts)
    time.sleep(0.2)  # less than summaries_idle_s after the request: nothing starts
    assert len(model.prompts) == asked
    wait_until(lambda: worker.made == 2, 30)  # taken up again once the model was quiet
    harbour = service.summarizer().summarize(find_document(service.retriever.corpus, "harbour-notes.pdf"))
    assert harbour.cached and len(harbour.points) == 3


def test_nothing_starts_while_the_model_is_answering(service):
    model = service.model()
    model.replies = []
    holding = model.activity.hold()
    holding.__enter__()  # an answer holds the model
    try:
        service.settings.ingest.summaries_idle_s = 0.05
        worker = service.start_background_summaries()
        time.sleep(0.4)
        assert model.prompts == [] and worker.made == 0
    finally:
        holding.__exit__(None, None, None)
    wait_until(lambda: worker.made == 2, 30)
