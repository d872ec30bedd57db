"""Many similar documents (issue 35): a card per document (organisation, period, kind) written by rules from
its file name and first pages, a question's named documents found among the cards, and the search held to
them (or searching them first), on a real Chroma store."""

from __future__ import annotations

import time

import pytest

from rag.answering.answer import Answerer
from rag.search.cards import CardError, card_from_text, card_store, name_tokens
from rag.search.retrieval import Retriever
from rag.search.routing import question_terms, route
from rag.search.scope import Scope
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor

SEC_COVER = """UNITED STATES
SECURITIES AND EXCHANGE COMMISSION
Washington, D.C. 20549
FORM 10-K
(Mark One)
ANNUAL REPORT PURSUANT TO SECTION 13 OR 15(d) OF THE SECURITIES EXCHANGE ACT OF 1934
For the fiscal year ended December 31, 2018
Commission file number 1-3285
3M COMPANY
(Exact name of registrant as specified in its charter)
Delaware
"""


@pytest.mark.parametrize(
    ("source", "text", "expected"),
    [
        ("ADOBE_2015_10K.pdf", "", ("Adobe", 2015, None, "", "annual report")),
        ("JPMORGAN_2022Q2_10Q.pdf", "", ("Jpmorgan", 2022, 2, "", "quarterly report")),
        ("PEPSICO_2023_8K_dated-2023-05-30.pdf", "", ("Pepsico", 2023, None, "2023-05-30", "current report")),
        ("annual-report.pdf", SEC_COVER, ("3M Company", 2018, None, "", "annual report")),
        (
            "quarter.pdf",
            "FORM 10-Q\nFor the quarterly period ended September 30, 2021\nACME CORP\n(Exact name of registrant as "
            "specified in its charter)",
            ("Acme Corp", 2021, 3, "", "quarterly report"),
        ),
        ("bail-dupont-2022-03-12.docx", "", ("", 2022, None, "2022-03-12", "lease")),
        ("leave-policy.md", "", ("", None, None, "", "policy")),
        (
            "contrat.pdf",
            "Contrat de prestation, version du 12 mars 2023, entre les parties",
            ("", 2023, None, "2023-03-12", "contract"),
        ),
        ("rapport.pdf", "Rapport financier de l'exercice clos le 31 décembre 2022", ("", 2022, None, "", "")),
        (
            "Politique_de_teletravail.pdf",
            "Le télétravail est possible deux jours par semaine.",
            ("", None, None, "", "policy"),
        ),
        ("Napoleon.txt", "Napoléon Bonaparte, né le 15 août 1769 à Ajaccio", ("", None, None, "", "")),
    ],
)
def test_cards_are_written_by_rules_from_the_file_name_and_the_first_pages(source, text, expected):
    card = card_from_text("root", source, text)
    assert (card.organisation, card.year, card.quarter, card.date, card.doc_type) == expected


def test_an_organisations_names_drop_corporate_suffixes():
    assert name_tokens("Adobe Systems Incorporated") == ("adobe", "systems")
    assert name_tokens("JPMorgan Chase & Co.") == ("jpmorgan", "chase")
    assert name_tokens("Société Générale S.A.") == ("societe", "generale")


@pytest.mark.parametrize(
    ("question", "years", "quarter", "dates", "types"),
    [
        ("What is 3M's FY2018 capital expenditure?", (2018,), None, (), ()),
        ("Revenue in fiscal 2018 according to the 2018 10-K", (2018,), None, (), ("annual report",)),
        ("What was the FY18 margin?", (2018,), None, (), ()),
        ("Which segment had the lowest revenue in 2021 Q1?", (2021,), 1, (), ()),
        ("As of FY2023Q1, why was guidance raised?", (2023,), 1, (), ()),
        ("Did risk decrease in the second fiscal quarter of 2023?", (2023,), 2, (), ()),
        ("Quel chiffre d'affaires au T3 2023 ?", (2023,), 3, (), ()),
        ("Combien au troisième trimestre 2023 ?", (2023,), 3, (), ()),
        ("Que dit la version du 12 mars 2023 du bail ?", (2023,), None, ("2023-03-12",), ("lease",)),
        ("What did the vote of May 3, 2023 decide?", (2023,), None, ("2023-05-03",), ()),
        ("Que dit la politique de télétravail ?", (), None, (), ("policy",)),
        ("How many employees were there?", (), None, (), ()),
        ("It cost $2019 million and 2020% more", (), None, (), ()),  # amounts are not years
    ],
)
def test_what_a_question_names(question, years, quarter, dates, types):
    terms = question_terms(question)
    assert (terms.years, terms.quarter, terms.dates, terms.doc_types) == (years, quarter, dates, types)


FILINGS = [
    card_from_text("r", name, "")
    for name in (
        "ADOBE_2015_10K.pdf",
        "ADOBE_2016_10K.pdf",
        "ADOBE_2022_10K.pdf",
        "JPMORGAN_2021Q1_10Q.pdf",
        "JPMORGAN_2022Q2_10Q.pdf",
        "KRAFTHEINZ_2019_10K.pdf",
        "ULTABEAUTY_2023Q4_EARNINGS.pdf",
        "PEPSICO_2022_10K.pdf",
        "PEPSICO_2023_8K_dated-2023-05-05.pdf",
        "PEPSICO_2023_8K_dated-2023-05-30.pdf",
    )
]


@pytest.mark.parametrize(
    ("question", "hard", "expected"),
    [
        ("What is Adobe's FY2016 operating income?", True, ["ADOBE_2016_10K.pdf"]),
        ("Adobe's change in revenue from FY2015 to FY2016", True, ["ADOBE_2015_10K.pdf", "ADOBE_2016_10K.pdf"]),
        ("Which of JPM's segments had the lowest net revenue in 2021 Q1?", True, ["JPMORGAN_2021Q1_10Q.pdf"]),
        ("What is Kraft Heinz's FY2019 inventory turnover?", False, ["KRAFTHEINZ_2019_10K.pdf"]),
        ("What drove Ulta Beauty's inventories?", False, ["ULTABEAUTY_2023Q4_EARNINGS.pdf"]),
        (
            "By how much did Pepsico increase its credit agreement on May 26, 2023?",
            True,
            ["PEPSICO_2023_8K_dated-2023-05-30.pdf"],
        ),
        ("What does Adobe say about risks?", True, ["ADOBE_2015_10K.pdf", "ADOBE_2016_10K.pdf", "ADOBE_2022_10K.pdf"]),
        ("Adobe's revenue in FY2030?", True, ["ADOBE_2015_10K.pdf", "ADOBE_2016_10K.pdf", "ADOBE_2022_10K.pdf"]),
        ("What was net income in FY2022?", False, ["ADOBE_2022_10K.pdf", "PEPSICO_2022_10K.pdf"]),
    ],
)
def test_a_question_is_routed_to_the_documents_it_names(question, hard, expected):
    found = route(question, FILINGS)
    assert found is not None
    assert (found.hard, [c.source for c in found.documents]) == (hard, expected)


@pytest.mark.parametrize(
    "question",
    [
        "How many days a week can one work from home?",
        "Quel est le plafond d'hôtel par nuit à Paris ?",
        "What happened in 1815 at Waterloo?",  # a year, but no card has a period
    ],
)
def test_a_question_that_names_no_document_is_not_routed(question):
    plain = [card_from_text("r", name, "") for name in ("travel-expenses.docx", "Napoleon.txt", "Waterloo.txt")]
    assert route(question, plain) is None
    assert route("What does the policy say?", [card_from_text("r", "a.txt", "")] * 1) is None


def test_routing_a_question_among_a_thousand_cards_takes_milliseconds():
    cards = [card_from_text("r", f"COMPANY{i % 100}_{2000 + i // 100}_10K.pdf", "") for i in range(1000)]
    question = "What was Company42's capital expenditure in FY2005 compared with FY2004?"
    start = time.perf_counter()
    for _ in range(20):
        found = route(question, cards)
    elapsed = (time.perf_counter() - start) / 20
    assert found is not None and [c.source for c in found.documents] == [
        "COMPANY42_2004_10K.pdf",
        "COMPANY42_2005_10K.pdf",
    ]
    assert elapsed < 0.05, f"{elapsed * 1000:.1f} ms per question"


def _filing(company: str, year: int, revenue: int) -> str:
    return (
        f"{company} Corporation annual report. For the fiscal year ended December 31, {year}.\n\n"
        f"Results of operations. Total revenue for fiscal {year} was {revenue} million dollars, driven by "
        f"subscriptions. Operating expenses grew with headcount. Capital expenditure was {revenue // 10} million.\n\n"
    )


@pytest.fixture
def filings(settings, tmp_path):
    """Three years of one company's near-identical reports and one of another's, in a real store."""
    folder = tmp_path / "filings"
    folder.mkdir()
    for year, revenue in ((2020, 410), (2021, 455), (2022, 502)):
        (folder / f"ACME_{year}_10K.txt").write_text(_filing("Acme", year, revenue))
    (folder / "GLOBEX_2022_10K.txt").write_text(_filing("Globex", 2022, 977))
    settings.retrieval.min_similarity = 0.0
    settings.llm.answerability_check = False
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([folder])
    return ingestor.store.documents()[0].root, ingestor


def test_the_search_runs_within_the_documents_the_question_names(settings, filings):
    _, ingestor = filings
    retriever = Retriever(ingestor.store, FakeEmbedder(), settings)
    seen = []
    passages = retriever.search("What was Acme's total revenue for fiscal 2021?", k=4, on_route=seen.append)
    assert {p.source for p in passages} == {"ACME_2021_10K.txt"}
    assert seen[0].hard and seen[0].describe() == "searched in: Acme, annual report, FY2021 (ACME_2021_10K.txt)"
    settings.retrieval.route_documents = False
    assert len({p.source for p in retriever.search("What was Acme's total revenue for fiscal 2021?", k=4)}) > 1


def test_a_period_alone_searches_its_documents_first_without_hiding_the_others(settings, filings):
    _, ingestor = filings
    retriever = Retriever(ingestor.store, FakeEmbedder(), settings)
    seen = []
    passages = retriever.search("Total revenue in fiscal 2022?", k=8, on_route=seen.append)
    assert not seen[0].hard
    assert {c.source for c in seen[0].documents} == {"ACME_2022_10K.txt", "GLOBEX_2022_10K.txt"}
    assert {p.source for p in passages[:2]} <= {"ACME_2022_10K.txt", "GLOBEX_2022_10K.txt"}
    assert len({p.source for p in passages}) > 2  # the other years are still there


def test_a_soft_route_embeds_the_question_once_for_both_of_its_searches(settings, filings):
    _, ingestor = filings
    embedder = FakeEmbedder()
    asked = []
    embed_query = embedder.embed_query
    embedder.embed_query = lambda text: asked.append(text) or embed_query(text)
    retriever = Retriever(ingestor.store, embedder, settings)
    seen = []
    retriever.search("Total revenue in fiscal 2022?", k=8, on_route=seen.append)
    assert not seen[0].hard and asked == ["Total revenue in fiscal 2022?"]  # within the named ones, then all


def test_a_hard_filter_that_finds_nothing_searches_everything_and_says_so(settings, filings, monkeypatch):
    _, ingestor = filings
    retriever = Retriever(ingestor.store, FakeEmbedder(), settings)
    found = retriever.route("What was Acme's total revenue for fiscal 2021?")
    gone = card_from_text(found.documents[0].root, "ACME_2019_10K.txt", "")
    found.documents = [gone]  # a document removed since its card was read
    monkeypatch.setattr(retriever, "route", lambda query, scope=None: found)
    seen = []
    passages = retriever.search("What was Acme's total revenue for fiscal 2021?", k=4, on_route=seen.append)
    assert passages and seen[0].widened
    assert seen[0].describe().startswith("nothing found in") and "every document" in seen[0].describe()


def test_the_answer_says_which_documents_were_searched(settings, filings):
    _, ingestor = filings
    llm = FakeLLM(["Revenue was 455 million [1]."])
    answer = Answerer(settings, Retriever(ingestor.store, FakeEmbedder(), settings), llm).answer(
        "What was Acme's total revenue for fiscal 2021?"
    )
    assert answer.route is not None and answer.route["hard"]
    assert [d["source"] for d in answer.route["documents"]] == ["ACME_2021_10K.txt"]
    assert {s.passage.source for s in answer.sources} == {"ACME_2021_10K.txt"}


def test_documents_chosen_by_the_asker_are_not_routed_again(settings, filings):
    root, ingestor = filings
    retriever = Retriever(ingestor.store, FakeEmbedder(), settings)
    chosen = Scope(documents=frozenset({(root, "ACME_2020_10K.txt")}))
    assert retriever.route("Acme's revenue for fiscal 2021?", chosen) is None
    passages = retriever.search("Acme's revenue for fiscal 2021?", k=4, scope=chosen)
    assert {p.source for p in passages} == {"ACME_2020_10K.txt"}


def test_routing_never_names_a_document_the_asker_may_not_read(settings, filings):
    root, ingestor = filings
    ingestor.store.set_collections(root, "ACME_2021_10K.txt", ["finance"])
    for name in ("ACME_2020_10K.txt", "ACME_2022_10K.txt", "GLOBEX_2022_10K.txt"):
        ingestor.store.set_collections(root, name, ["public"])
    retriever = Retriever(ingestor.store, FakeEmbedder(), settings)
    public = Scope(collections=frozenset({"public"}))
    found = retriever.route("What was Acme's total revenue for fiscal 2021?", public)
    assert found is not None and "ACME_2021_10K.txt" not in {c.source for c in found.documents}
    passages = retriever.search("What was Acme's total revenue for fiscal 2021?", k=4, scope=public)
    assert passages and "ACME_2021_10K.txt" not in {p.source for p in passages}


def test_a_corrected_card_is_kept_when_the_document_is_ingested_again(settings, filings):
    root, ingestor = filings
    folder = settings.paths.store_dir.parent / "filings"
    cards = card_store(settings.paths.store_dir)
    assert {c.source: c.year for c in cards.cards(ingestor.store)}["ACME_2020_10K.txt"] == 2020
    cards.set_fields(root, "ACME_2020_10K.txt", {"year": "2019", "organisation": "Acme Widgets"})
    (folder / "ACME_2020_10K.txt").write_text(_filing("Acme", 2020, 411))  # changed: its card is written again
    ingestor.run([folder])
    card = {c.source: c for c in cards.cards(ingestor.store)}["ACME_2020_10K.txt"]
    assert (card.year, card.organisation, card.edited) == (2019, "Acme Widgets", ("organisation", "year"))
    assert "acme widgets" in card.aliases and "acme" in card.aliases
    cards.set_fields(root, "ACME_2020_10K.txt", {"year": None})  # the correction forgotten: the rules' year
    assert {c.source: c.year for c in cards.cards(ingestor.store)}["ACME_2020_10K.txt"] == 2020
    with pytest.raises(CardError, match="cannot be set: pages"):
        cards.set_fields(root, "ACME_2020_10K.txt", {"pages": 3})
    with pytest.raises(CardError, match="a quarter is 1 to 4"):
        cards.set_fields(root, "ACME_2020_10K.txt", {"quarter": "Q5"})
    cards.close()


def test_the_ingest_writes_the_cards_and_drops_those_of_removed_documents(settings, filings):
    import sqlite3

    _, ingestor = filings
    folder = settings.paths.store_dir.parent / "filings"

    def stored() -> set[str]:
        with sqlite3.connect(settings.paths.store_dir / "cards.sqlite3") as db:
            return {source for (source,) in db.execute("SELECT source FROM cards")}

    assert stored() == {"ACME_2020_10K.txt", "ACME_2021_10K.txt", "ACME_2022_10K.txt", "GLOBEX_2022_10K.txt"}
    (folder / "GLOBEX_2022_10K.txt").unlink()
    ingestor.run([folder])
    assert "GLOBEX_2022_10K.txt" not in stored()


def test_a_period_named_alone_puts_its_documents_passages_first_without_last_years_copies():
    from rag.answering.packing import Passage
    from rag.search.retrieval import _favoured

    def passage(source: str, text: str, relevance: float) -> Passage:
        return Passage(f"{source}-{relevance}", text, source, 0, 0, 0, 0.0, "r", rerank_score=relevance)

    ranked = [
        passage("survey-2021.txt", "A total of 54 species were recorded, up from 49 in the 2018 survey.", 0.93),
        passage("survey-2018.txt", "A total of 49 species were recorded, up from 44 in the 2015 survey.", 0.90),
        passage("survey-2021.txt", "Skylark counts fell for the second survey in a row.", 0.70),
        passage("survey-2018.txt", "The reserve was surveyed on twelve mornings.", 0.40),
    ]
    kept = _favoured(ranked, {("r", "survey-2018.txt")})
    assert [(p.source, p.rerank_score) for p in kept] == [
        ("survey-2018.txt", 0.90),  # the named year's, ahead of last year's copy within 0.1 (which is dropped)
        ("survey-2021.txt", 0.70),  # another passage of another year stays, in its place
        ("survey-2018.txt", 0.40),
    ]
