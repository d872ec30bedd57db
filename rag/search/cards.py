"""A card per stored document: what it is about (organisation), which period it covers (fiscal year, quarter,
date), what kind of document it is, its language and length.

Archives hold many near-identical documents (ten years of one company's annual reports, successive versions
of a contract): a question names which one it means ("Adobe's FY2016 operating income"), and passage search
alone ranks every year's nearly identical passages alike. The cards let ``rag.search.routing`` find the named
documents first. They are written by rules from the file name and the document's first chunks (the store
already holds them: nothing is parsed again, and a store ingested before cards existed gets them on first
use), kept in ``cards.sqlite3`` beside the store per document version, and a field a person corrected
(``sourcier cards set``) is kept across re-ingests.
"""

from __future__ import annotations

import json
import re
import sqlite3
import threading
import unicodedata
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields, replace
from datetime import date
from pathlib import Path
from typing import Any

from rag.errors import SourcierError
from rag.private_db import open_private
from rag.search.corpus import Corpus, DocumentInfo
from rag.search.scope import Scope

CARDS_FILE = "cards.sqlite3"
# The rules read this many of a document's first chunks (its cover page and what follows).
FIRST_CHUNKS = 12
# Fields a person may set (``sourcier cards set``); the others are counted (pages, language).
EDITABLE = ("title", "organisation", "year", "quarter", "date", "doc_type")
RULES_VERSION = 3  # cards written by older rules are written again
TITLE_MAX = 100  # a first line longer than this (or ending a sentence) is a paragraph, not a title

MONTHS = {
    "january": 1, "february": 2, "march": 3, "april": 4, "may": 5, "june": 6, "july": 7, "august": 8,
    "september": 9, "october": 10, "november": 11, "december": 12,
    "janvier": 1, "fevrier": 2, "mars": 3, "avril": 4, "mai": 5, "juin": 6, "juillet": 7, "aout": 8,
    "septembre": 9, "octobre": 10, "novembre": 11, "decembre": 12,
    "jan": 1, "feb": 2, "mar": 3, "apr": 4, "jun": 6, "jul": 7, "aug": 8, "sep": 9, "sept": 9, "oct": 10,
    "nov": 11, "dec": 12,
}  # fmt: skip

# Kinds of document, each with the words (folded) that name it in a file name or a question.
DOC_TYPES: dict[str, tuple[str, ...]] = {
    "annual report": ("10-k", "10k", "annual report", "rapport annuel", "document d'enregistrement universel"),
    "quarterly report": ("10-q", "10q", "quarterly report", "rapport trimestriel"),
    "current report": ("8-k", "8k", "current report"),
    "earnings release": ("earnings release", "earnings report", "earnings call", "earnings"),
    "contract": ("contract", "contrat", "agreement", "accord"),
    "lease": ("lease", "bail"),
    "policy": ("policy", "politique", "charte", "reglement"),
    "invoice": ("invoice", "facture"),
    "minutes": ("minutes", "proces-verbal", "compte rendu"),
}
# In a file name, these words name a kind on their own (a question needs the fuller forms: see rag.search.routing).
_NAME_TYPE_WORDS = {w: kind for kind, words in DOC_TYPES.items() for w in words}

_CORPORATE = {
    "inc", "incorporated", "corp", "corporation", "co", "company", "companies", "ltd", "limited", "plc", "llc",
    "sa", "sas", "se", "ag", "nv", "group", "groupe", "holdings", "holding", "the", "and", "et", "de", "des",
}  # fmt: skip
_REGISTRANT = re.compile(r"\(\s*exact name of registrant as specified in its charter\s*\)", re.IGNORECASE)
_FISCAL_END = re.compile(
    r"for the (fiscal )?(year|quarterly period|quarter) ended:?\s+([a-z]+)\.?\s+(\d{1,2}),?\s+((?:19|20)\d\d)",
    re.IGNORECASE,
)
_REPORT_DATE = re.compile(
    r"date of report[^:]{0,60}:?\s*\)?\s*([a-z]+)\.?\s+(\d{1,2}),?\s+((?:19|20)\d\d)", re.IGNORECASE
)
_FR_CLOSED = re.compile(r"exercice clos le\s+(\d{1,2})(?:er)?\s+([a-zéû]+)\s+((?:19|20)\d\d)", re.IGNORECASE)
_FR_VERSION = re.compile(
    r"(?:version|en date|mis à jour|mise à jour) du\s+(\d{1,2})(?:er)?\s+([a-zéû]+)\s+((?:19|20)\d\d)", re.IGNORECASE
)
_EN_VERSION = re.compile(
    r"(?:dated(?: as of)?|effective(?: as of)?|version of)\s+([a-z]+)\.?\s+(\d{1,2}),?\s+((?:19|20)\d\d)",
    re.IGNORECASE,
)


# A year in a document's first line (its title), not one naming something else ('2019-nCoV').
_TITLE_YEAR = re.compile(r"(?<![\w-])((?:19|20)\d\d)(?!\w|-[^\W\d])")


class CardError(SourcierError):
    """A card cannot be read or set (no such document, a field that cannot be set)."""


@dataclass(frozen=True)
class DocumentCard:
    """What one stored document is (see the module's docstring). ``edited`` names the fields a person set."""

    root: str
    source: str
    title: str = ""
    organisation: str = ""
    aliases: tuple[str, ...] = ()  # other names of the organisation (folded), from the file name and cover
    year: int | None = None  # the (fiscal) year it covers or was written in
    quarter: int | None = None  # 1-4 for a quarter's report
    date: str = ""  # ISO date of a dated document (a current report, a contract's version)
    doc_type: str = ""
    language: str = ""
    pages: int = 0
    edited: tuple[str, ...] = ()

    @property
    def period(self) -> str:
        """The period for display: 'FY2018', '2021 Q1', '2023-05-05' or ''."""
        if self.date:
            return self.date
        return _period(self.year, self.quarter, "", self.doc_type)

    def label(self) -> str:
        """One line naming it: '3M, annual report, FY2018 (3M_2018_10K.pdf)'."""
        parts = [p for p in (self.organisation, self.doc_type, self.period) if p]
        return f"{', '.join(parts)} ({self.source})" if parts else self.source

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["aliases"], data["edited"], data["period"] = list(self.aliases), list(self.edited), self.period
        return data


def fold(text: str) -> str:
    """Lower case without accents, for matching names and words."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).lower()


def name_tokens(name: str) -> tuple[str, ...]:
    """An organisation's name as folded words without corporate suffixes ('Adobe Systems Incorporated' ->
    ('adobe', 'systems'))."""
    words = re.findall(r"[a-z0-9]+", re.sub(r"\.(?=\w\.)|(?<=\b\w)\.", "", fold(name)).replace("&", " "))
    return tuple(w for w in words if w not in _CORPORATE)


def card_from_text(root: str, source: str, first_text: str, pages: int = 0, language: str = "") -> DocumentCard:
    """A document's card by rules, from its file name and the text of its first chunks."""
    stem = Path(source).stem
    name = _from_file_name(stem)
    text = _from_text(first_text)
    organisation = text.get("organisation") or name.get("organisation", "")
    aliases = tuple(
        dict.fromkeys(
            a
            for a in (
                " ".join(name_tokens(organisation)),
                " ".join(name_tokens(name.get("organisation", ""))),
                "".join(name_tokens(name.get("organisation", ""))),
            )
            if a
        )
    )
    year = name.get("year") or text.get("year")
    quarter = name.get("quarter") or text.get("quarter")
    doc_type = name.get("doc_type") or text.get("doc_type", "")
    when = name.get("date") or text.get("date", "")
    if when and not year:
        year = int(when[:4])
    if quarter and doc_type == "annual report":
        quarter = None
    organisation = _display_name(organisation)
    title = " ".join(p for p in (organisation, doc_type, _period(year, quarter, when, doc_type)) if p) or stem
    return DocumentCard(
        root=root,
        source=source,
        title=title,
        organisation=organisation,
        aliases=aliases,
        year=year,
        quarter=quarter,
        date=when,
        doc_type=doc_type,
        language=language,
        pages=pages,
    )


FINANCIAL = ("annual report", "quarterly report", "earnings release")


def _period(year: int | None, quarter: int | None, when: str, doc_type: str) -> str:
    """'2023-05-05', '2021 Q1', 'FY2018' (a financial report's fiscal year), '2024' or ''."""
    if when:
        return when
    if year and quarter:
        return f"{year} Q{quarter}"
    return "" if not year else f"FY{year}" if doc_type in FINANCIAL else str(year)


def _display_name(name: str) -> str:
    """'ADOBE' -> 'Adobe', 'JPMorgan Chase & Co.' unchanged."""
    name = " ".join(name.split())
    return name.title() if name.isupper() and len(name) > 3 else name


def _from_file_name(stem: str) -> dict[str, Any]:
    """Period, kind and organisation from a file name such as 'ADOBE_2015_10K', 'PEPSICO_2023Q1_EARNINGS',
    'PEPSICO_2023_8K_dated-2023-05-05' or 'acme-lease-2022-03-12'. The organisation is the words before the
    first period or kind, and only when the name holds a period ('leave-policy' names no organisation)."""
    found: dict[str, Any] = {}
    iso = re.search(r"((?:19|20)\d\d)-(\d\d)-(\d\d)", stem)
    if iso and _valid(int(iso[1]), int(iso[2]), int(iso[3])):
        found["date"] = iso[0]
        stem = stem.replace(iso[0], " ")
    tokens = [t for t in re.split(r"[_\-\s.]+", stem) if t]
    first_marker = None
    for i, token in enumerate(tokens):
        low = fold(token)
        m = re.fullmatch(r"(?:fy)?((?:19|20)\d\d)(?:q([1-4]))?", low) or re.fullmatch(
            r"(?:q|t)([1-4])((?:19|20)\d\d)", low
        )
        if m:
            groups = m.groups()
            year, quarter = (groups[0], groups[1]) if len(groups[0]) == 4 else (groups[1], groups[0])
            found.setdefault("year", int(year))
            if quarter:
                found.setdefault("quarter", int(quarter))
        elif re.fullmatch(r"[qt][1-4]", low):
            found.setdefault("quarter", int(low[1]))
        elif low in _NAME_TYPE_WORDS:
            found.setdefault("doc_type", _NAME_TYPE_WORDS[low])
        elif low == "dated":
            pass
        else:
            continue
        if first_marker is None:
            first_marker = i
    if first_marker and ("year" in found or "date" in found):
        words = tokens[:first_marker]
        while words and (re.fullmatch(r"\d{3,}|0\d*", words[0]) or fold(words[0]) in _CORPORATE):  # an id: 0068-
            words = words[1:]
        while words and fold(words[-1]) in _CORPORATE:  # '...-universelle-de-2010'
            words = words[:-1]
        found["organisation"] = " ".join(words)
    return found


def _from_text(text: str) -> dict[str, Any]:
    """Organisation, period and kind from a document's first pages (an SEC filing's cover, a French annual
    report's 'exercice clos le', a contract's 'version du' or 'dated as of')."""
    found: dict[str, Any] = {}
    head = text[:20000]
    registrant = _REGISTRANT.search(head)
    if registrant:
        before = [line.strip() for line in head[: registrant.start()].splitlines() if line.strip()]
        if before:
            found["organisation"] = re.sub(r"\s*\(.*$", "", before[-1])[:120]
    m = _FISCAL_END.search(head)
    if m:
        month, day, year = MONTHS.get(fold(m[3])), int(m[4]), int(m[5])
        if month and _valid(year, month, day):
            if fold(m[2]).startswith("year"):
                found["year"], found["doc_type"] = year, "annual report"
            else:
                found["year"], found["quarter"], found["doc_type"] = year, (month - 1) // 3 + 1, "quarterly report"
    m = _REPORT_DATE.search(head)
    if m and "year" not in found:
        month = MONTHS.get(fold(m[1]))
        if month and _valid(int(m[3]), month, int(m[2])):
            found["date"], found["doc_type"] = date(int(m[3]), month, int(m[2])).isoformat(), "current report"
    m = _FR_CLOSED.search(head)
    if m and "year" not in found:
        found["year"] = int(m[3])
    title = next((line for line in head.splitlines() if line.strip()), "")
    is_title = len(title) <= TITLE_MAX and not title.rstrip().endswith((".", "!", "?", ";", ":", ","))
    in_title = set(_TITLE_YEAR.findall(title)) if is_title else set()
    if len(in_title) == 1 and "year" not in found:  # 'Bird Survey 2024', 'guide pratique, édition 2023'
        found["year"] = int(in_title.pop())
    for pattern, order in ((_FR_VERSION, (3, 2, 1)), (_EN_VERSION, (3, 1, 2))):
        m = pattern.search(head)
        if m and "date" not in found:
            y, mo, d = (m[i] for i in order)
            month = MONTHS.get(fold(mo))
            if month and _valid(int(y), month, int(d)):
                found["date"] = date(int(y), month, int(d)).isoformat()
    return found


def _valid(year: int, month: int, day: int) -> bool:
    try:
        date(year, month, day)
    except ValueError:
        return False
    return True


class CardStore:
    """The cards of one store, in ``cards.sqlite3`` beside it: one row per document version (its last ingest
    time) written by the rules, and the fields people set, kept apart so that a re-ingest keeps them."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._db = open_private(
            path,
            [
                "CREATE TABLE IF NOT EXISTS cards (root TEXT, source TEXT, version TEXT, rules INTEGER, "
                "card TEXT, PRIMARY KEY (root, source))",
                "CREATE TABLE IF NOT EXISTS edits (root TEXT, source TEXT, fields TEXT, PRIMARY KEY (root, source))",
            ],
        )
        # (store version and corrections' data_version, the documents, their cards), kept until either changes
        self._cache: tuple[str, list[DocumentInfo], list[DocumentCard]] | None = None

    def close(self) -> None:
        self._db.close()

    def cards(self, corpus: Corpus, scope: Scope | None = None) -> list[DocumentCard]:
        """The card of every document of ``corpus`` that ``scope`` admits, written first for those that have
        none or an outdated one; remembered until the store changes or a card is corrected."""
        with self._lock:
            # Another process's (or connection's) corrections change SQLite's data_version.
            version = f"{corpus.version()}/{self._db.execute('PRAGMA data_version').fetchone()[0]}"
            if self._cache is None or self._cache[0] != version:
                listed = corpus.documents()
                self._cache = (version, listed, self._read(corpus, listed))
            _, listed, found = self._cache
        if scope is None:
            return found
        return [
            card for doc, card in zip(listed, found, strict=True) if scope.admits(doc.root, doc.source, doc.collections)
        ]

    def _read(self, corpus: Corpus, listed: Sequence[DocumentInfo]) -> list[DocumentCard]:
        """The cards of ``listed``: those stored for the document's version, the others written. Under the lock."""
        stored = {
            (r, s): (v, rules, card)
            for r, s, v, rules, card in self._db.execute("SELECT root, source, version, rules, card FROM cards")
        }
        edits = {(r, s): json.loads(f) for r, s, f in self._db.execute("SELECT root, source, fields FROM edits")}
        result, written = [], []
        for doc in listed:
            key = (doc.root, doc.source)
            row = stored.get(key)
            if row is not None and row[0] == doc.ingested_at and row[1] == RULES_VERSION:
                card = _card_from_json(row[2])
            else:
                card = self._write_card(corpus, doc)
                written.append((doc.root, doc.source, doc.ingested_at, RULES_VERSION, _card_json(card)))
            result.append(_with_edits(card, edits.get(key)))
        if written:
            with _transaction(self._db):
                self._db.executemany("INSERT OR REPLACE INTO cards VALUES (?, ?, ?, ?, ?)", written)
        return result

    @staticmethod
    def _write_card(corpus: Corpus, doc: DocumentInfo) -> DocumentCard:
        first = corpus.neighbours(doc.root, doc.source, range(FIRST_CHUNKS))
        text = "\n".join(first[i][0] for i in sorted(first))
        languages = [str(first[i][1].get("language", "")) for i in first]
        known = [lang for lang in languages if lang and lang != "und"]
        language = max(set(known), key=known.count) if known else ""
        return card_from_text(doc.root, doc.source, text, pages=len(doc.pages), language=language)

    def set_fields(self, root: str, source: str, values: Mapping[str, Any]) -> None:
        """Keep what a person set for a document (a value of None or '' forgets that field's correction)."""
        unknown = set(values) - set(EDITABLE)
        if unknown:
            raise CardError(f"these fields cannot be set: {', '.join(sorted(unknown))} (can: {', '.join(EDITABLE)})")
        with self._lock, _transaction(self._db):
            row = self._db.execute("SELECT fields FROM edits WHERE root = ? AND source = ?", (root, source)).fetchone()
            kept = json.loads(row[0]) if row else {}
            for name, value in values.items():
                if value in (None, ""):
                    kept.pop(name, None)
                else:
                    kept[name] = _checked(name, value)
            self._db.execute("INSERT OR REPLACE INTO edits VALUES (?, ?, ?)", (root, source, json.dumps(kept)))
            self._cache = None

    def forget(self, keep: Iterable[tuple[str, str]]) -> int:
        """Drop the cards (not the corrections) of documents no longer stored; the number dropped."""
        keep = set(keep)
        with self._lock, _transaction(self._db):
            gone = [k for k in self._db.execute("SELECT root, source FROM cards") if tuple(k) not in keep]
            self._db.executemany("DELETE FROM cards WHERE root = ? AND source = ?", gone)
            self._cache = None
            return len(gone)


@contextmanager
def _transaction(db: sqlite3.Connection) -> Iterator[None]:
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def _checked(name: str, value: Any) -> Any:
    if name == "year":
        year = int(value)
        if not 1900 <= year <= 2100:
            raise CardError(f"a year between 1900 and 2100, not {value}")
        return year
    if name == "quarter":
        quarter = int(str(value).upper().lstrip("QT"))
        if not 1 <= quarter <= 4:
            raise CardError(f"a quarter is 1 to 4, not {value}")
        return quarter
    if name == "date":
        try:
            return date.fromisoformat(str(value)).isoformat()
        except ValueError:
            raise CardError(f"a date as YYYY-MM-DD, not {value}") from None
    return str(value).strip()


def _with_edits(card: DocumentCard, edits: Mapping[str, Any] | None) -> DocumentCard:
    if not edits:
        return card
    changed = replace(card, **{k: v for k, v in edits.items() if k in EDITABLE}, edited=tuple(sorted(edits)))
    if "organisation" in edits:
        aliases = (" ".join(name_tokens(str(edits["organisation"]))), *card.aliases)
        changed = replace(changed, aliases=tuple(dict.fromkeys(a for a in aliases if a)))
    return changed


_CARD_FIELDS = {f.name for f in fields(DocumentCard)}


def _card_json(card: DocumentCard) -> str:
    return json.dumps(asdict(card))


def _card_from_json(text: str) -> DocumentCard:
    data = {k: v for k, v in json.loads(text).items() if k in _CARD_FIELDS}
    data["aliases"], data["edited"] = tuple(data.get("aliases", ())), tuple(data.get("edited", ()))
    return DocumentCard(**data)


def card_store(store_dir: Path) -> CardStore:
    """The card store beside a store (created when missing)."""
    store_dir.mkdir(parents=True, exist_ok=True)
    return CardStore(store_dir / CARDS_FILE)


__all__ = [
    "CardError",
    "CardStore",
    "DocumentCard",
    "card_from_text",
    "card_store",
    "fold",
    "name_tokens",
]
