"""ingest.summaries with the real packaged embedder, Chroma and a real GGUF in its worker process (the small
SmolLM2): the server summarises a stored document while no one asks anything, a request stops it at once (the
real llama.cpp evaluation aborted), and the summary is then there for the asking; no worker outlives it."""

from __future__ import annotations

import shutil
import time

import pytest

from devkit import SAMPLE_DATA
from devkit.models import smollm_path
from ingest.pipeline import ingest_paths
from rag.answering.summary import find_document
from rag.settings import Settings
from service import build_service
from tests.integration.test_model_worker import runners

pytestmark = pytest.mark.integration


def wait_until(condition, timeout: float) -> float:
    start = time.monotonic()
    while not condition():
        assert time.monotonic() - start < timeout, "timed out"
        time.sleep(0.02)
    return time.monotonic() - start


def test_the_server_summarises_while_idle_and_a_question_stops_it_at_once(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(SAMPLE_DATA / "politique-teletravail.pdf", docs)
    settings = Settings()
    settings.paths.store_dir = tmp_path / "store"
    settings.llm.model_path = smollm_path()
    settings.ingest.summaries = True
    settings.ingest.summaries_idle_s = 0.5
    assert ingest_paths([docs], settings).ok
    service = build_service(settings)
    worker = service.background
    try:
        assert worker is not None and worker.alive
        wait_until(lambda: service.loaded_model() is not None and service.loaded_model().activity.state().busy, 120)
        model = service.model()  # a question arrives while the summary is being made
        stopped = wait_until(lambda: not model.activity.state().busy, 10)
        assert stopped < 1.0 and worker.interrupted == 1
        wait_until(lambda: worker.made + worker.failed == 1, 600)  # taken up again after the quiet time
        assert worker.failed == 0
        doc = find_document(service.retriever.corpus, "politique-teletravail.pdf")
        summary = service.summarizer().summarize(doc)
        assert summary.cached and summary.sections >= 1  # made in the background: asked for, it is there
    finally:
        service.stop_background()
        if service.loaded_model() is not None:
            service.loaded_model().close()
    assert not worker.alive and not runners(), "the background thread or a model worker outlived the service"
