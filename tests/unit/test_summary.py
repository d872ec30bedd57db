"""Whole-document summaries and comparisons (rag.answering.summary): sections, the page check, the cache, cancelling,
and the questions routed to them; a real Chroma store, a fake model with queued replies."""

from __future__ import annotations

import subprocess
import sys

import pytest

from devkit.pdfs import text_pdf
from rag.answering.answer import Answerer
from rag.answering.summary import (
    Point,
    Summarizer,
    checked,
    documents_named,
    find_document,
    parse_points,
    sections_of,
    summary_cache,
    summary_kind,
    with_progress,
)
from rag.llm.turns import Cancellation
from rag.search.retrieval import Retriever
from tests.conftest import REPO
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor

WORDS = [
    "amber",
    "birch",
    "cedar",
    "dune",
    "ember",
    "fjord",
    "grove",
    "heath",
    "inlet",
    "juniper",
    "kelp",
    "larch",
    "moss",
    "nettle",
]
PAGES = [
    "The harbour keeps twelve brass lanterns in the north shed. "
    + " ".join(f"Gulls nest near the {w} post of the north shed roof." for w in WORDS),
    "The ferry to Lindholm leaves at 7:40 every weekday. "
    + " ".join(f"Tickets for the {w} deck of the Lindholm ferry are sold on board." for w in WORDS),
    "Repairs to the west pier cost 48,000 euros in 2024. "
    + " ".join(f"The {w} section of the west pier was closed for the repairs." for w in WORDS),
]
OTHER = ["La bibliothèque municipale ouvre à 9 heures du mardi au samedi. "
         + " ".join(f"La salle {w} accueille les lecteurs." for w in WORDS)]  # fmt: skip


@pytest.fixture
def store(settings, tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "harbour-notes.pdf").write_bytes(text_pdf(PAGES))
    (docs / "bibliotheque-horaires.pdf").write_bytes(text_pdf(OTHER))
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([docs])
    return ingestor.store


def summarizer(settings, store, *replies: str) -> tuple[Summarizer, FakeLLM]:
    llm = FakeLLM(list(replies))
    return Summarizer(llm, store, summary_cache(settings.paths.store_dir)), llm


MAP_REPLIES = (
    "- The harbour keeps twelve brass lanterns in the north shed. (p. 1)\n- The moon is made of green cheese. (p. 1)",
    "- The ferry to Lindholm leaves at 7:40 every weekday. (p. 1)",  # page 1 is not in this section: re-cited
    "- Repairs to the west pier cost 48,000 euros in 2024. (p. 3)",
)


def test_each_section_is_summarised_checked_against_its_pages_then_each_run_condensed(settings, store, monkeypatch):
    monkeypatch.setattr("rag.answering.summary.SUMMARY_POINTS", 2)  # 3 sections in 2 runs, one point each: pages 1-2, 3
    reduce = "- The harbour keeps twelve brass lanterns and the ferry to Lindholm leaves at 7:40. (p. 1, 2)"
    summ, llm = summarizer(settings, store, *MAP_REPLIES, reduce)
    doc = find_document(store, "harbour-notes.pdf")
    seen = []
    summary = summ.summarize(doc, on_progress=seen.append)
    assert (summary.pages, summary.sections, summary.language) == (3, 3, "en")
    assert [(p.text, p.pages) for p in summary.points] == [
        (reduce[2:-10], (1, 2)),
        ("Repairs to the west pier cost 48,000 euros in 2024.", (3,)),  # the last run: its own point, no call
    ]
    assert vars(summary.check) == {"written": 5, "recited": 1, "dropped": 1}
    assert "[page 1]" in llm.prompts[0].text and "[page 2]" not in llm.prompts[0].text
    assert '"1"' in llm.grammars[0] and '"2"' not in llm.grammars[0]  # a point may cite its own section's pages
    assert "(p. 2)" in llm.prompts[3].text  # the reduce step reads the re-cited point with its right page
    assert "west pier" not in llm.prompts[3].text and "into one point" in llm.prompts[3].text
    assert [(p.stage, p.done) for p in seen] == [("map", 1), ("map", 2), ("map", 3), ("reduce", 4)]


def test_a_long_document_s_summary_cites_every_part_of_it(monkeypatch):
    from rag.answering.summary import _reduce_calls, _runs

    assert [(r.start, r.stop, most) for r, most in _runs(31)] == [
        (0, 4, 1), (4, 9, 1), (9, 13, 1), (13, 18, 1), (18, 22, 1), (22, 27, 1), (27, 31, 1)
    ]  # fmt: skip
    assert [(r.start, r.stop, most) for r, most in _runs(3)] == [(0, 1, 3), (1, 2, 2), (2, 3, 2)]
    assert _runs(0) == [] and _reduce_calls([4, 4, 4]) == 3 and _reduce_calls([1, 1]) == 0


def test_a_summary_is_kept_and_a_changed_page_is_all_that_is_summarised_again(settings, store, tmp_path):
    summ, _ = summarizer(settings, store, *MAP_REPLIES)
    first = summ.summarize(find_document(store, "harbour-notes.pdf"))
    assert not first.cached and len(first.points) == 3
    again, llm = summarizer(settings, store)  # no reply queued: the model is not asked
    kept = again.summarize(find_document(store, "harbour-notes.pdf"))
    assert kept.cached and kept.points == first.points and llm.prompts == []
    changed = [*PAGES[:2], "Repairs to the east pier cost 9,000 euros in 2025. " + PAGES[2].split(". ", 1)[1]]
    (tmp_path / "docs" / "harbour-notes.pdf").write_bytes(text_pdf(changed))
    fake_ingestor(settings)[0].run([tmp_path / "docs"])
    summ, llm = summarizer(settings, store, "- Repairs to the east pier cost 9,000 euros in 2025. (p. 3)")
    redone = summ.summarize(find_document(store, "harbour-notes.pdf"))
    assert not redone.cached and redone.reused_sections == 2 and len(llm.prompts) == 1
    assert redone.points[-1] == Point("Repairs to the east pier cost 9,000 euros in 2025.", (3,))


def test_a_stopped_summary_keeps_its_sections_and_the_next_goes_on_from_there(settings, store):
    summ, llm = summarizer(settings, store, *MAP_REPLIES)
    cancel = Cancellation()
    stopped = summ.summarize(find_document(store, "harbour-notes.pdf"), cancel=cancel,
                             on_progress=lambda p: cancel.cancel())  # fmt: skip
    assert stopped.cancelled and stopped.points == [] and len(llm.prompts) == 1
    summ, llm = summarizer(settings, store, *MAP_REPLIES[1:])
    summary = summ.summarize(find_document(store, "harbour-notes.pdf"))
    assert summary.reused_sections == 1 and len(llm.prompts) == 2 and len(summary.points) == 3


def test_a_question_asking_for_a_summary_is_answered_by_it_with_its_pages_as_sources(settings, store):
    llm = FakeLLM([*MAP_REPLIES])
    answerer = Answerer(settings, Retriever(store, FakeEmbedder(), settings), llm)
    stream = answerer.stream("Summarize the harbour notes")
    shown = "".join(stream)
    answer = stream.answer
    assert "sections summarised: 3 of 3" in shown and "brass lanterns" in shown
    assert answer.found and answer.summary["kind"] == "summary" and answer.summary["document"].endswith("notes.pdf")
    assert [(s.passage.page, s.cited) for s in answer.sources] == [(1, True), (2, True), (3, True)]
    assert answer.text.splitlines()[1] == "- The ferry to Lindholm leaves at 7:40 every weekday. [2]"
    assert all(c.supported for c in answer.citations) and "[page 1]" in llm.prompts[0].text
    settings.retrieval.min_similarity = 0.0
    llm.replies.append('[1] "The harbour keeps twelve brass lanterns in the north shed."\nAnswer: twelve.')
    plain = answerer.answer("How many brass lanterns does the harbour keep?")
    assert plain.summary is None  # a question about a fact: the usual passages


def test_a_comparison_lines_up_both_documents_each_side_cited_to_its_own_pages(settings, store):
    rows = (
        "* Opening hours\nA: The ferry to Lindholm leaves at 7:40 every weekday. (p. 2)\n"
        "B: La bibliothèque municipale ouvre à 9 heures du mardi au samedi. (p. 1)\n"
        "* Repairs\nA: Repairs to the west pier cost 48,000 euros in 2024. (p. 3)\nB: not covered\n"
    )
    library = "- La bibliothèque municipale ouvre à 9 heures du mardi au samedi. (p. 1)"
    llm = FakeLLM([*MAP_REPLIES, library, rows])
    answerer = Answerer(settings, Retriever(store, FakeEmbedder(), settings), llm)
    answer = answerer.answer("Compare the harbour notes and the bibliotheque horaires")
    assert answer.summary["kind"] == "compare" and len(answer.summary["documents"]) == 2
    lines = answer.text.splitlines()
    assert (
        lines[0] == "* Opening hours"
        and lines[1].startswith("  A (harbour-notes.pdf): The ferry")
        and "[1]" in lines[1]
    )
    assert lines[2].startswith("  B (bibliotheque-horaires.pdf): La bibliothèque") and lines[5].endswith(": -")
    assert {(s.passage.source.split("/")[-1], s.passage.page) for s in answer.sources} >= {
        ("harbour-notes.pdf", 2), ("bibliotheque-horaires.pdf", 1), ("harbour-notes.pdf", 3)}  # fmt: skip
    assert "page-a ::=" in llm.grammars[-1] and '"not covered"' in llm.grammars[-1]


@pytest.mark.parametrize(
    ("question", "kind"),
    [
        ("Résume la politique de télétravail", "summary"),
        ("Fais une synthèse du guide du compost", "summary"),
        ("Quels sont les points clés du rapport ?", "summary"),
        ("Summarise the travel expenses policy", "summary"),
        ("What are the main risks in this report?", "summary"),
        ("Give me a short overview of the contract", "summary"),
        ("Compare the two policies", "compare"),
        ("Quelles sont les différences entre les deux contrats ?", "compare"),
        ("What is the total of the summary compensation table?", None),
        ("Combien de jours par semaine peut-on télétravailler ?", None),
        ("What was the operating income in FY2016?", None),
    ],
)
def test_questions_about_whole_documents_are_told_from_the_others(question, kind):
    assert summary_kind(question) == kind


def test_documents_are_named_by_the_words_of_their_file_names(store):
    docs = store.documents()
    assert [d.source.split("/")[-1] for d in documents_named("Résume les horaires de la bibliothèque", docs)] == [
        "bibliotheque-horaires.pdf"
    ]
    assert documents_named("Summarize the report", docs) == []


def test_sections_keep_to_their_budget_and_a_long_page_is_cut_at_sentence_ends():
    from rag.answering.summary import PageText

    pages = [PageText(1, "Short page one."), PageText(2, "A sentence here. " * 40), PageText(3, "Tail.")]
    sections = sections_of(pages, len, 200)
    assert sections[0].pages == (1,) and all(sum(len(t) for _, t in s.parts) <= 220 for s in sections)
    assert sum(1 for s in sections if 2 in s.pages) > 2  # the long page, cut in parts
    assert sections[-1].parts[-1] == (3, "Tail.") and {p for s in sections for p in s.pages} == {1, 2, 3}


def test_points_are_read_in_the_shapes_models_write_them():
    points = parse_points(
        "- Chaque salarié peut, p. 2. (p. 2)\n* Revenue grew 5% (pages 4, 9)\n1. No page here.\n- cut short at t",
        [2, 4, 9],
    )
    assert points == [Point("Chaque salarié peut.", (2,)), Point("Revenue grew 5%", (4, 9)), Point("No page here.", ())]
    kept, report = checked(points, {2: "Chaque salarié peut venir.", 4: "Revenue grew 5% in 2024."}, [2, 4])
    assert [p.pages for p in kept] == [(2,), (4,)] and (report.recited, report.dropped) == (0, 1)


def test_a_stream_closed_early_cancels_the_work_and_waits_for_it():
    cancel = Cancellation()

    def run(on_progress):
        from rag.answering.summary import Progress

        for i in range(1000):
            if cancel.cancelled:
                return "stopped"
            on_progress(Progress("map", i, 1000, None))
        return "done"

    events = with_progress(run, cancel, lambda p: str(p.done))
    assert next(events) == "0"
    events.close()
    assert cancel.cancelled


def test_the_cli_names_a_document_it_does_not_have_before_any_model_loads(settings, store):
    env = {"SOURCIER_LLM__MODEL_PATH": "/nonexistent.gguf", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "rag", "--store", str(settings.paths.store_dir), "summarize",
                          "nothing.pdf"], capture_output=True, text=True, cwd=REPO, env=env, timeout=120)  # fmt: skip
    assert out.returncode == 2 and "no stored document is named 'nothing.pdf'" in out.stderr, out.stderr


def test_what_was_summarised_of_a_removed_document_goes_with_it(settings, store, tmp_path):
    import sqlite3

    summ, _ = summarizer(settings, store, *MAP_REPLIES)
    summ.summarize(find_document(store, "harbour-notes.pdf"))
    (tmp_path / "docs" / "harbour-notes.pdf").unlink()
    fake_ingestor(settings)[0].run([tmp_path / "docs"])
    db = sqlite3.connect(settings.paths.store_dir / "summaries.sqlite3")
    left = db.execute("SELECT points FROM sections UNION ALL SELECT summary FROM summaries").fetchall()
    assert not any("lanterns" in row[0] for row in left), left


def test_a_summaries_file_of_an_older_shape_is_made_again_and_one_that_cannot_open_keeps_nothing(tmp_path):
    import sqlite3

    old = tmp_path / "summaries.sqlite3"
    db = sqlite3.connect(old)
    db.execute("CREATE TABLE sections (key TEXT PRIMARY KEY, points TEXT, seconds REAL)")
    db.commit()
    db.close()
    cache = summary_cache(tmp_path)
    from rag.search.corpus import DocumentInfo

    cache.keep_section("k", DocumentInfo("r", "a.pdf"), [Point("x", (1,))], 1.0)
    assert cache.section("k") == [Point("x", (1,))]
    (tmp_path / "file").write_text("")
    assert summary_cache(tmp_path / "file") is None  # a file where the store folder should be
