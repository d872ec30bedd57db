"""Quote, then answer: the grammar, the quote matcher, the display while streaming, the answer-vs-quote check,
and the Answerer's quoted style (fake model)."""

from __future__ import annotations

import re

import pytest

from rag.answering.answer import NOT_FOUND, Answerer
from rag.answering.quotes import (
    MAX_QUOTE_CHARS,
    MIN_QUOTE_CHARS,
    Mismatch,
    QuotedDisplay,
    answer_grammar,
    answer_mismatches,
    clause_spans,
    locate_quote,
    parse_quoted,
)
from rag.llm.gbnf import check_grammar
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor, sentence_holding

PASSAGES = [
    "Le rapport d'incident indique une panne de 47 minutes. Les données sont intactes ; aucune écriture "
    "n'a été perdue.\nL'équipe a réagi en neuf minutes, confor-\nmément au plan « Orage ».",
    'Capital expenditures\n1,577\n1,373\nThe board said "no dividend" for 2018, as planned.',
]


def _grammar_rules(grammar: str) -> dict[str, str]:
    return dict(line.split(" ::= ", 1) for line in grammar.strip().splitlines())


def _literals(rule: str) -> list[str]:
    return [
        bytes(m, "utf-8").decode("unicode_escape").encode("latin-1").decode("utf-8")
        for m in re.findall(r'"((?:[^"\\]|\\.)*)"', rule)
    ]


def _quotes_allowed(rules: dict[str, str], number: int) -> set[str]:
    """Every quote the grammar allows for passage ``number``."""
    return set(_literals(rules[f"p{number}"]))


def test_the_grammar_allows_only_runs_of_clauses_of_the_passage_it_cites():
    rules = _grammar_rules(answer_grammar(PASSAGES))
    assert re.findall(r'"(\d+)\] ', rules["cite"]) == ["1", "2"]  # no number outside the passages
    for number, passage in enumerate(PASSAGES, 1):
        allowed = _quotes_allowed(rules, number)
        assert allowed and all(locate_quote(q, passage) for q in allowed)  # every allowed quote is in its passage
    first = _quotes_allowed(rules, 1)
    assert "Le rapport d'incident indique une panne de 47 minutes." in first
    assert "L'équipe a réagi en neuf minutes, conformément au plan « Orage »." in first  # hyphenation joined
    assert "conformément au plan « Orage »." in first  # a quote may start at any clause
    # ... and never runs past its sentence's end
    assert not any("47 minutes. Les données" in q for q in first)
    assert not any('"' in q for q in _quotes_allowed(rules, 2))  # inner double quotes would close the quote
    assert 'answer ::= [^\\n\\[\\] "]' in answer_grammar(PASSAGES)  # an answer cannot start with a marker


def test_quotes_are_bounded_in_length_but_a_long_clause_may_stand_alone():
    long_sentence = ", ".join(f"clause number {i} of a long sentence" for i in range(12)) + "."
    rules = _grammar_rules(answer_grammar([long_sentence]))
    allowed = _quotes_allowed(rules, 1)
    assert max(len(q) for q in allowed) <= MAX_QUOTE_CHARS
    assert "clause number 3 of a long sentence, clause number 4 of a long sentence," in allowed
    one_clause = "A" + "a" * 300 + "."
    assert _quotes_allowed(_grammar_rules(answer_grammar([one_clause])), 1) == {one_clause}


def test_the_grammar_is_valid_gbnf_and_handles_no_passages():
    check_grammar(answer_grammar(PASSAGES))  # llama.cpp's own parser: tests/integration/test_grammar_property.py
    assert answer_grammar([]).strip() == 'root ::= "NONE"'


def test_a_passage_with_nothing_quotable_is_left_out_of_the_citations():
    # issue 30: "Tuvalu" has no clause of MIN_QUOTE_CHARS, and its rule was written empty (llama.cpp: SIGSEGV)
    passages = ["La Nina is the positive phase of the oscillation.", "Tuvalu", "Its total land area is 26 km2."]
    grammar = answer_grammar(passages)
    check_grammar(grammar)
    rules = _grammar_rules(grammar)
    assert re.findall(r'"(\d+)\] ', rules["cite"]) == ["1", "3"] and "p2" not in rules
    assert answer_grammar(["Tuvalu", "2,", "—", "Page 3"]).strip() == 'root ::= "NONE"'  # nothing to cite: decline


def test_clauses_cut_at_punctuation_and_line_breaks_but_not_hyphenated_words():
    pieces = [PASSAGES[0][s:e] for s, e in clause_spans(PASSAGES[0])]
    assert "L'équipe a réagi en neuf minutes," in pieces
    assert "confor-\nmément au plan « Orage »." in pieces


@pytest.mark.parametrize(
    "quote",
    [
        "le rapport d'incident indique une panne de 47 minutes.",  # case
        "Les donnees sont intactes",  # accents dropped
        "Les  données\nsont   intactes",  # blanks and line breaks
        "conformément au plan",  # hyphenated across a line break in the passage
        "L’équipe a réagi",  # typographic apostrophe
        "plan Orage",  # the quote's own quotation marks left out
    ],
)
def test_a_quote_is_found_in_its_passage_despite_spelling_details(quote):
    span = locate_quote(quote, PASSAGES[0])
    assert span is not None
    start, end = span
    assert PASSAGES[0][start:end].replace("\n", " ").lower().startswith(quote.split()[0].lower().replace("’", "'")[:2])


def test_a_quote_not_in_its_passage_is_not_found():
    assert locate_quote("Le rapport indique une panne de 45 minutes.", PASSAGES[0]) is None
    assert locate_quote("ab", PASSAGES[0]) is None
    parsed = parse_quoted(
        '[2] "Le rapport d\'incident indique une panne de 47 minutes."\nAnswer: 47 minutes.', PASSAGES
    )
    assert parsed.found and parsed.quote.number == 2 and not parsed.quote.verbatim  # right words, wrong passage


def test_parse_reads_the_answer_none_and_output_of_another_shape():
    parsed = parse_quoted('[1] "Les données sont intactes ;"\nAnswer: Oui, elles sont intactes.', PASSAGES)
    assert parsed.found and parsed.answer == "Oui, elles sont intactes." and parsed.quote.verbatim
    assert PASSAGES[0][parsed.quote.start : parsed.quote.end] == "Les données sont intactes ;"
    assert parse_quoted("NONE", PASSAGES) == parse_quoted("  NONE\n", PASSAGES)
    assert not parse_quoted("NONE", PASSAGES).found and parse_quoted("NONE", PASSAGES).well_formed
    alone = parse_quoted('[1] "Les données sont intactes ;"', PASSAGES)  # no answer line: the quote answers
    assert alone.found and alone.answer == "Les données sont intactes ;" and alone.quote.verbatim
    other = parse_quoted("The outage lasted 47 minutes [1].", PASSAGES)
    assert not other.well_formed and other.answer == "The outage lasted 47 minutes [1]."


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_the_display_shows_quote_then_answer_whatever_the_pieces(size):
    raw = '[1] "Le rapport d\'incident indique une panne de 47 minutes."\nAnswer: 47 minutes.'
    display = QuotedDisplay()
    shown = "".join(display.feed(raw[i : i + size]) for i in range(0, len(raw), size)) + display.end()
    assert shown == "«Le rapport d'incident indique une panne de 47 minutes.» [1]\n\n47 minutes."
    french = QuotedDisplay()
    raw = '[1] "conformément au plan « Orage »."\nAnswer: Oui.'
    assert "".join(french.feed(ch) for ch in raw) + french.end() == "«conformément au plan « Orage ».» [1]\n\nOui."
    none = QuotedDisplay()
    assert none.feed("NO") + none.feed("NE") + none.end() == "" and none.none
    free = QuotedDisplay()
    assert free.feed("The outage") + free.feed(" lasted 47 minutes [1].") + free.end() == (
        "The outage lasted 47 minutes [1]."
    )


def test_the_answer_is_checked_against_its_quote():
    quote = "Le rapport d'incident indique une panne de 47 minutes."
    assert answer_mismatches("47 minutes.", quote) == []
    assert answer_mismatches("La panne a duré quarante-sept minutes.", quote) != []  # said in words, flagged
    assert answer_mismatches("Une panne de 45 minutes.", quote) == [Mismatch("number", "45")]
    assert answer_mismatches("Il n'y a pas eu de panne.", quote) == [Mismatch("negation")]
    assert answer_mismatches("La panne chez Orange a duré 47 minutes.", quote) == [Mismatch("name", "Orange")]
    assert str(Mismatch("number", "45")) == "the number 45 is not in the quote"
    assert answer_mismatches("La panne chez Orange a duré 47 minutes.", quote, "Et chez Orange ?") == []
    assert answer_mismatches("1 577 millions", "Capital expenditures\n1,577") == []  # the same number


@pytest.fixture
def retriever(settings, corpus):
    from rag.search.retrieval import Retriever

    ingestor, _ = fake_ingestor(settings)
    ingestor.run([corpus])
    return Retriever(ingestor.store, FakeEmbedder(), settings)


def _answerer(settings, retriever, reply: str) -> tuple[Answerer, FakeLLM]:
    settings.llm.answer_style = "quoted"
    settings.retrieval.min_similarity = 0.0  # the fake embedder's similarities are low
    llm = FakeLLM([reply])
    return Answerer(settings, retriever, llm), llm


def test_a_quoted_answer_cites_the_quote_passage_and_shows_the_quote(settings, retriever):
    question = "How long did the storage outage last?"
    number, passage, sentence = sentence_holding(retriever, question, settings.retrieval.k, "minutes")
    answerer, llm = _answerer(settings, retriever, f'[{number}] "{sentence}"\nAnswer: It lasted some minutes.')
    stream = answerer.stream(question)
    shown = "".join(stream)
    answer = stream.answer
    assert shown.startswith("«") and shown.endswith("It lasted some minutes.")
    assert answer.found and answer.text == f"It lasted some minutes. [{number}]"
    assert answer.quote.verbatim and answer.cited_sources[0].number == number and answer.cited_sources[0].supported
    assert passage.text[answer.quote.start : answer.quote.end].replace("\n", " ").startswith(sentence[:20])
    assert answer.display_text == shown
    assert llm.grammars[0] is not None and f'"{number}] ' in llm.grammars[0]
    assert llm.decodings[0].repeat_penalty == 1.0  # copying: no penalty on repeating the passage's words
    assert "copy" in llm.prompts[0].text and "NONE" in llm.prompts[0].text


def test_none_from_the_model_is_a_clear_not_found(settings, retriever):
    answerer, _ = _answerer(settings, retriever, "NONE")
    stream = answerer.stream("How long did the storage outage last?")
    assert "".join(stream) == NOT_FOUND["en"]
    assert not stream.answer.found and stream.answer.sources and not stream.answer.cited_sources

    late = _answerer(settings, retriever, '[1] "The storage outage."\nAnswer: NONE')[0].answer("How long?")
    assert not late.found and late.text == NOT_FOUND["en"]  # NONE written as the answer, after a quote


def test_a_quote_missing_from_its_passage_is_a_failed_citation_shown_as_such(settings, retriever):
    answerer, _ = _answerer(settings, retriever, '[1] "The moon is made of cheese."\nAnswer: Cheese.')
    answer = answerer.answer("How long did the storage outage last?")
    assert answer.found and not answer.quote.verbatim
    assert answer.cited_sources[0].supported is False and answer.unsupported_citations
    assert [str(w) for w in answer.warnings] == ["the quote is not in passage [1]"]


def test_an_answer_contradicting_its_quote_is_flagged_not_hidden(settings, retriever):
    question = "How long did the storage outage last?"
    number, passage, sentence = sentence_holding(retriever, question, settings.retrieval.k, "minutes")
    answerer, _ = _answerer(settings, retriever, f'[{number}] "{sentence}"\nAnswer: 12345 minutes.')
    answer = answerer.answer(question)
    assert answer.found and answer.quote.verbatim and answer.text.startswith("12345 minutes.")
    assert answer.warnings == [Mismatch("number", "12345")]


@pytest.mark.parametrize(
    "passage",
    [
        'As a proverb says "a thousand-mile journey starts from one step". Then it goes on.',
        "existing molecules (Knight et al., 1980; Zhou et al., 1997 Zhou et al., , 2005 Sarkar et al., 1999) .",
        "Capital expenditures\n1,577\n1,373\n(in millions)",
        "Le chiffre d'af-\nfaires a crû de 12 % ; la marge — elle — a baissé.",
    ],
)
def test_every_quote_the_grammar_allows_is_found_in_its_passage(passage):
    rules = _grammar_rules(answer_grammar([passage]))
    allowed = _quotes_allowed(rules, 1)
    assert allowed and all(locate_quote(q, passage) for q in allowed), allowed
    assert all(len(q) >= MIN_QUOTE_CHARS for q in allowed)
