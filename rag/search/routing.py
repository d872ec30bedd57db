"""Which documents a question names: its organisations, years, quarters, dates and kinds of document matched
against the documents' cards (``rag.search.cards``), before passage search.

"3M's FY2018 capital expenditure" names 3M's 2018 annual report; among ten years of near-identical filings,
passage search alone ranks every year's wording alike. When the question names an organisation of several
documents, the search runs within that organisation's documents, narrowed to the named period and kind when
some match (a hard filter, through the same :class:`~rag.search.scope.Scope` as ``--in``; when it finds nothing, the
search runs over everything and says so). An organisation of one document, or a period or kind named
without an organisation, only boosts the matching documents (their passages searched apart and fused in).
A question that names nothing is searched as before. Rules and keyword matching only: milliseconds per
question at a thousand documents.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date

from rag.search.cards import DOC_TYPES, MONTHS, DocumentCard, fold

# A dated document matches a date the question names when it is dated this many days before to this many
# days after it (a current report is filed a few days after the event it reports).
DATE_BEFORE_DAYS = 3
DATE_AFTER_DAYS = 14

_YEAR = re.compile(
    r"(?<![\d.,$€])(?:fy|fiscal(?: year)?|exercice(?: fiscal)?|year|annee)?\s?'?((?:19|20)\d\d)(?![\d%]|-(?!fy)[a-z])"
)
_SHORT_FY = re.compile(r"\bfy\s?'?(\d\d)\b")
_QUARTER = [
    re.compile(r"\b(?:q|t)([1-4])\b"),
    re.compile(r"\b(?:fy)?(?:19|20)\d\dq([1-4])\b"),
    re.compile(r"\b(first|second|third|fourth|1st|2nd|3rd|4th)(?: fiscal)? quarter\b"),
    re.compile(r"\b(premier|1er|deuxieme|second|2e|troisieme|3e|quatrieme|4e) trimestre\b"),
]
_ORDINALS = {
    "first": 1, "1st": 1, "premier": 1, "1er": 1, "second": 2, "2nd": 2, "deuxieme": 2, "2e": 2,
    "third": 3, "3rd": 3, "troisieme": 3, "3e": 3, "fourth": 4, "4th": 4, "quatrieme": 4, "4e": 4,
}  # fmt: skip
_DATE_EN = re.compile(r"\b([a-z]+)\.?\s+(\d{1,2})(?:st|nd|rd|th)?,?\s+((?:19|20)\d\d)\b")
_DATE_FR = re.compile(r"\b(\d{1,2})(?:er)?\s+([a-z]+)\s+((?:19|20)\d\d)\b")
_DATE_ISO = re.compile(r"\b((?:19|20)\d\d)-(\d\d)-(\d\d)\b")
# The words that name a kind of document in a question (a bare 'earnings' or 'accord' does not).
_QUESTION_TYPES = {
    kind: tuple(w for w in words if w not in {"earnings", "accord", "10k", "10q", "8k", "minutes"})
    for kind, words in DOC_TYPES.items()
}


@dataclass(frozen=True)
class QuestionTerms:
    """What a question names that cards can match."""

    years: tuple[int, ...] = ()
    quarter: int | None = None
    dates: tuple[str, ...] = ()
    doc_types: tuple[str, ...] = ()

    @property
    def period(self) -> bool:
        return bool(self.years or self.quarter or self.dates)


@dataclass
class Route:
    """The documents a question was routed to. ``hard``: the search ran only within them; else they were
    boosted. ``named``: what the question named that matched (for display). ``widened``: the hard filter found
    nothing and the search ran over every document."""

    documents: list[DocumentCard] = field(default_factory=list)
    hard: bool = False
    named: list[str] = field(default_factory=list)
    widened: bool = False

    @property
    def keys(self) -> frozenset[tuple[str, str]]:
        return frozenset((c.root, c.source) for c in self.documents)

    def describe(self) -> str:
        """'searched in: Adobe, annual report, FY2016 (ADOBE_2016_10K.pdf)' and the like."""
        names = "; ".join(c.label() for c in self.documents[:5])
        more = f" and {len(self.documents) - 5} more" if len(self.documents) > 5 else ""
        if self.widened:
            return f"nothing found in {names}{more}: searched in every document"
        return f"{'searched in' if self.hard else 'searched first in'}: {names}{more}"

    def as_dict(self) -> dict[str, object]:
        return {
            "hard": self.hard,
            "widened": self.widened,
            "named": list(self.named),
            "documents": [{"root": c.root, "source": c.source, "label": c.label()} for c in self.documents],
            "note": self.describe(),
        }


def question_terms(question: str) -> QuestionTerms:
    """The years, quarter, dates and kinds of document a question names."""
    text = fold(question)
    dates = []
    for m in _DATE_EN.finditer(text):
        dates.append(_iso(m[3], MONTHS.get(m[1]), m[2]))
    for m in _DATE_FR.finditer(text):
        dates.append(_iso(m[3], MONTHS.get(m[2]), m[1]))
    for m in _DATE_ISO.finditer(text):
        dates.append(_iso(m[1], int(m[2]), m[3]))
    years = [int(m[1]) for m in _YEAR.finditer(text)]
    years += [2000 + int(m[1]) for m in _SHORT_FY.finditer(text)]
    quarter = None
    for pattern in _QUARTER:
        m = pattern.search(text)
        if m:
            quarter = int(m[1]) if m[1].isdigit() else _ORDINALS[m[1]]
            break
    types = tuple(kind for kind, words in _QUESTION_TYPES.items() if any(_has_phrase(text, w) for w in words))
    return QuestionTerms(tuple(dict.fromkeys(years)), quarter, tuple(d for d in dict.fromkeys(dates) if d), types)


def _iso(year: str, month: int | None, day: str) -> str:
    try:
        return date(int(year), month or 0, int(day)).isoformat() if month else ""
    except ValueError:
        return ""


def _has_phrase(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(phrase)}(?![\w-])", text) is not None


@dataclass(frozen=True)
class QuestionWords:
    """A question's words as names are matched against them (computed once per question)."""

    words: str  # folded words, one space apart, possessives dropped
    present: frozenset[str]
    joined: str  # the same without spaces
    capitals: tuple[str, ...]  # ticker-like words in capitals, folded ('jpm')

    @classmethod
    def of(cls, question: str) -> QuestionWords:
        text = fold(question).replace("\u2019", "'")
        words = " ".join(re.findall(r"[a-z0-9&]+", re.sub(r"'s\b", "", text)))
        capitals = tuple(fold(w) for w in re.findall(r"\b[A-Z][A-Z0-9&]{2,}\b", question))
        return cls(words, frozenset(words.split()), words.replace(" ", ""), capitals)


def names_organisation(card: DocumentCard, question: str | QuestionWords) -> str:
    """The name by which ``question`` names the card's organisation ('' when it does not): one of its aliases
    as whole words ('kraft heinz'; every word of it, in any order: 'guide compost' in 'le guide du compost'),
    the alias written as one word ('kraftheinz'), or a ticker-like word in capitals that starts it ('JPM' for
    'jpmorgan')."""
    q = question if isinstance(question, QuestionWords) else QuestionWords.of(question)
    for alias in card.aliases:
        if " " in alias:
            if set(alias.split()) <= q.present:
                return alias
        elif alias in q.present:
            return alias
        elif len(alias) >= 6 and alias in q.joined:  # 'kraft heinz' asked, 'kraftheinz' in the file name
            spaced = [w for w in q.present if alias.startswith(w)]
            if spaced and max(len(w) for w in spaced) >= 3:
                return alias
    for low in q.capitals:
        if any(a.startswith(low) and len(a) >= len(low) + 2 for alias in card.aliases for a in alias.split()):
            return low.upper()
    return ""


def route(question: str, cards: Sequence[DocumentCard]) -> Route | None:
    """The documents ``question`` names among ``cards`` (see the module's docstring); None when it names
    none, or names them all."""
    if len(cards) < 2:
        return None
    terms = question_terms(question)
    named: list[str] = []
    by_organisation: list[DocumentCard] = []
    asked = QuestionWords.of(question)
    for card in cards:
        alias = names_organisation(card, asked)
        if alias:
            by_organisation.append(card)
            if alias not in named:
                named.append(alias)
    pool = by_organisation or list(cards)
    if terms.doc_types:
        typed = [c for c in pool if c.doc_type in terms.doc_types]
        if typed:
            pool = typed
            named += list(terms.doc_types)
    if terms.period:
        scored = [(period_match(c, terms), c) for c in pool]
        best = max(score for score, _ in scored)
        if best > 0:
            pool = [c for score, c in scored if score == best]
            named += [*(f"{y}" for y in terms.years), *terms.dates]
    if len(pool) == len(cards):
        return None
    # Held to them when the question names an organisation of several documents (one of a family of similar
    # ones); a single document it names is searched first, as a period or kind alone is.
    hard = len(by_organisation) >= 2
    return Route(documents=sorted(pool, key=lambda c: (c.root, c.source)), hard=hard, named=named)


def period_match(card: DocumentCard, terms: QuestionTerms) -> int:
    """How well a card's period matches what the question names: 3 for the named date or quarter, 2 for a
    named year's whole-year document, 1 for a document of a named year, 0 for none."""
    best = 0
    if card.date and terms.dates:
        when = date.fromisoformat(card.date)
        for named in terms.dates:
            days = (when - date.fromisoformat(named)).days
            if -DATE_BEFORE_DAYS <= days <= DATE_AFTER_DAYS:
                best = max(best, 3)
    years = set(terms.years) | {int(d[:4]) for d in terms.dates}
    if card.year in years:
        if terms.quarter is not None:
            best = max(best, 3 if card.quarter == terms.quarter else 1)
        else:
            best = max(best, 2 if card.quarter is None and not card.date else 1)
    return best
