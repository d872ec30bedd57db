"""Citation markers: parsed, mapped to passages, invalid ones removed and counted, support checked."""

from __future__ import annotations

import pytest

from rag.answering.citations import check_citations, split_sentences, support
from rag.text import fold

PASSAGES = [
    "The outage lasted 47 minutes and about 1,200 users could not save their files.",
    "Chaque salarié peut télétravailler jusqu'à trois jours par semaine, sauf le mardi.",
    "Hotel costs in Paris are reimbursed up to 170 euros per night.",
]


def test_markers_map_to_passages():
    report = check_citations("The outage lasted 47 minutes [1]. Paris hotels: up to 170 euros a night [3].", PASSAGES)
    assert report.cited == [1, 3] and report.invalid_markers == 0
    assert all(c.supported for c in report.citations)


@pytest.mark.parametrize(
    ("answer", "cited"),
    [
        ("It lasted 47 minutes [1, 3].", [1, 3]),
        ("It lasted 47 minutes [1][3].", [1, 3]),
        ("47 minutes [ 1 ;3 ]", [1, 3]),
    ],
)
def test_grouped_markers(answer, cited):
    assert check_citations(answer, PASSAGES).cited == cited


def test_a_marker_pointing_nowhere_is_removed_and_counted():
    report = check_citations("It lasted 47 minutes [1][7]. Also [9].", PASSAGES)
    assert report.invalid_markers == 2 and report.cited == [1]
    assert "[7]" not in report.text and "[9]" not in report.text and report.text.startswith("It lasted 47 minutes [1].")


def test_a_wrong_number_is_unsupported_even_with_overlapping_words():
    ok, _ = support("The outage lasted 52 minutes.", PASSAGES[0])
    assert not ok
    report = check_citations("The outage lasted 52 minutes [1].", PASSAGES)
    assert [c.number for c in report.unsupported] == [1]


def test_a_passage_about_something_else_does_not_support_the_sentence():
    report = check_citations("Employees may work from home three days a week [3].", PASSAGES)
    assert report.unsupported and report.unsupported[0].overlap < 0.3


def test_french_support_ignores_accents_and_stopwords():
    ok, overlap = support("Les salariés peuvent télétravailler trois jours par semaine [2].", PASSAGES[1])
    assert ok and overlap >= 0.5
    assert fold("Été À") == "ete a"


def test_a_marker_after_the_full_stop_stays_with_its_sentence():
    assert split_sentences("It lasted 47 minutes. [1] Then it was fixed.") == [
        "It lasted 47 minutes. [1]",
        "Then it was fixed.",
    ]
    report = check_citations("It lasted 47 minutes. [1][2] Then it was fixed.", PASSAGES)
    assert {c.number for c in report.citations} == {1, 2} and report.citations[0].sentence.startswith("It lasted")


def test_no_markers_means_no_citations():
    report = check_citations("I could not find this in the documents.", PASSAGES)
    assert report.citations == [] and report.cited == [] and report.invalid_markers == 0


@pytest.mark.parametrize(
    ("sentence", "passage"),
    [
        (
            "On peut télétravailler 3 jours par semaine [1].",
            "Chaque salarié peut télétravailler jusqu'à trois jours par semaine.",
        ),
        ("Remote work is allowed three days a week [1].", "Remote work: up to 3 days per week."),
        ("About 1200 users were affected [1].", "About 1,200 users were affected."),
    ],
)
def test_numbers_match_whether_written_in_digits_or_words(sentence, passage):
    assert support(sentence, passage)[0]


def test_a_number_word_that_differs_is_still_caught():
    assert not support("Remote work is allowed four days a week [1].", "Remote work: up to 3 days per week.")[0]


def test_articles_are_not_read_as_numbers():
    assert support("Une allocation de 400 euros est versée [1].", "Allocation d'équipement : 400 euros, versée.")[0]
