"""The real default model quotes the sentence that answers, not the title line above it (issue 36's example:
"Harbour notes, 2024." quoted for the lanterns)."""

from __future__ import annotations

import pytest

from rag.answering.answer import build_answerer
from rag.settings import PathSettings, Settings
from tests.integration.test_real_ingest import cli

pytestmark = pytest.mark.integration

NOTE = (
    "Harbour notes, 2024.\n"
    "The quartermaster of Zanzibar keeps exactly forty-two brass lanterns in the east warehouse. "
    "Rope, tar and sailcloth are ordered each spring from the mainland."
)
QUESTION = "How many brass lanterns does the quartermaster keep?"


@pytest.fixture(scope="module")
def store_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("harbour")
    (folder / "harbour-notes.txt").write_text(NOTE, encoding="utf-8")
    store = folder / "store"
    assert cli("ingest", str(folder / "harbour-notes.txt"), "--store", str(store), "-q").returncode == 0
    return store


def test_the_quote_is_the_sentence_that_answers(store_dir):
    settings = Settings(paths=PathSettings(store_dir=store_dir))
    answer = build_answerer(settings).answer(QUESTION)
    assert answer.found and answer.quote is not None, answer.display_text
    assert "Harbour notes" not in answer.quote.text
    assert "forty-two brass lanterns" in answer.quote.text, answer.quote.text
    assert answer.cited_sources and all(s.supported for s in answer.cited_sources)
