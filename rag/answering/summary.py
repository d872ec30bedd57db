"""A whole document summarised, or two compared: what four retrieved passages cannot answer.

Map, then reduce. The document's pages (its stored chunks put back together) are cut into sections of about
``SECTION_TOKENS``; the model writes a few points for each section, each point ending with the page it comes
from, ``(p. 3)``, a page of that section (a local model is held to that shape and to those pages by a grammar).
Every point is then checked against the page it cites with the answers' own citation check (its content words
and every number it states must be on the page): a point another page of the section backs is cited to that
page instead, a point no page backs is dropped. The points of every section are then reduced to the summary of
the whole document (in rounds, when they do not fit one prompt), each point citing the pages of the points it
draws on, and checked the same way against those pages.

A comparison lines up two documents' summaries topic by topic, each side cited to its own document's pages.

What the model wrote is kept in ``summaries.sqlite3`` beside the store: each section's points under the hash of
its text (a changed document re-summarises only the sections that changed), and each summary under its
document's version (``file_hash``): asked again, a summary is instant.
"""

from __future__ import annotations

import hashlib
import json
import logging
import queue
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.answering.citations import support
from rag.errors import SourcierError
from rag.llm.base import ChatModel
from rag.llm.turns import Cancellation, cancelled
from rag.private_db import open_private
from rag.search.corpus import CHUNK_ID, Corpus, DocumentInfo, Record
from rag.search.scope import Scope
from rag.text import LANGUAGE_NAMES, UNDETERMINED, fold

log = logging.getLogger(__name__)

SUMMARIES_FILE = "summaries.sqlite3"
LANGUAGE_CHUNKS = 24  # a document's language: the most common among its first chunks
CACHE_SCHEMA = 2  # PRAGMA user_version of the file; another: its tables are made again (they are a cache)
MAP_VERSION = 4  # raise when the map's prompt or grammar changes: sections kept under the old ones are not reused
REDUCE_VERSION = 5  # the same for the reduce: whole summaries kept under the old one are made again (from the
# sections kept, when the map did not change)
SECTION_TOKENS = 1200  # document text per map prompt (the default model prefills ~86 tokens/s on 2 cores)
REDUCE_TOKENS = 1400  # points per reduce prompt
MAP_POINTS = 4  # at most, per section
SUMMARY_POINTS = 7  # at most, in the summary of a whole document
COMPARE_ROWS = 6
POINT_CHARS = 220  # longest point a local model may write (it would copy whole paragraphs: slow, and no summary)
MAP_ANSWER_TOKENS = 70 * MAP_POINTS
REDUCE_ANSWER_TOKENS = 60 * SUMMARY_POINTS
COMPARE_ANSWER_TOKENS = 110 * COMPARE_ROWS
NOT_COVERED = {"en": "not covered", "fr": "non traité"}

MAP_SYSTEM = (
    "You summarise one part of a document. Write at most {points} points, in {language}, that cover the whole "
    "text, from its first page to its last. Each point is one short sentence that states a fact, a figure, a "
    "rule or a conclusion of the text, in the text's own words. End each point "
    "with the page it comes from, like (p. 3)."
)
REDUCE_SYSTEM = (
    "You condense the points of one part of a document into {points}, in {language}: keep what matters most, "
    "merge points that say the same thing, leave out details. Each point is one sentence that keeps the words "
    "and figures of the points it comes from. End each point with their pages, like (p. 2, 7)."
)
COMPARE_SYSTEM = (
    "You compare two documents, A and B, from their summaries. List at most {rows} topics, in {language}. For "
    "each topic write a line '* ' and the topic, then a line 'A:' with what A says and its pages like (p. 2), "
    "then a line 'B:' with what B says and its pages, or '{not_covered}' when a document does not cover it. "
    "Topics both cover come first."
)


@dataclass(frozen=True)
class PageText:
    """One page of a stored document, put back together from its chunks (their overlaps removed)."""

    number: int
    text: str
    chunk_id: str = ""  # its first chunk: what a citation of the page opens


@dataclass(frozen=True)
class Point:
    """One statement of a summary and the pages it cites; ``supported``: the cited pages hold its content
    words and every number it states."""

    text: str
    pages: tuple[int, ...]
    supported: bool = True


@dataclass
class SummaryCheck:
    """What the page check did to the model's points."""

    written: int = 0  # points the model wrote
    recited: int = 0  # cited to another page of their section, which backs them
    dropped: int = 0  # backed by no page: left out

    def add(self, other: SummaryCheck) -> None:
        self.written += other.written
        self.recited += other.recited
        self.dropped += other.dropped


@dataclass
class Summary:
    root: str
    source: str
    version: str  # the document's file_hash
    language: str
    points: list[Point]
    pages: int
    sections: int
    model: str
    check: SummaryCheck = field(default_factory=SummaryCheck)
    seconds: float = 0.0  # the model's time; 0 for one kept from before
    cached: bool = False
    cancelled: bool = False
    reused_sections: int = 0  # sections whose points were kept from an earlier version of the document
    page_texts: dict[int, PageText] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("page_texts")
        return data

    def details(self) -> dict[str, Any]:
        """What was done, without the points (``Answer.summary``; ``details_line`` says it in words)."""
        return {
            "kind": "summary",
            "document": self.source,
            "root": self.root,
            "pages": self.pages,
            "sections": self.sections,
            "cached": self.cached,
            "seconds": round(self.seconds, 1),
            "check": asdict(self.check),
        }


@dataclass(frozen=True)
class Side:
    text: str
    pages: tuple[int, ...]
    supported: bool


@dataclass(frozen=True)
class Row:
    """One topic of a comparison; a side is None when its document does not cover the topic."""

    topic: str
    a: Side | None
    b: Side | None


@dataclass
class Comparison:
    a: Summary
    b: Summary
    language: str
    rows: list[Row]
    seconds: float = 0.0
    cancelled: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "a": self.a.as_dict(),
            "b": self.b.as_dict(),
            "language": self.language,
            "rows": [asdict(r) for r in self.rows],
            "seconds": self.seconds,
            "cancelled": self.cancelled,
        }


@dataclass(frozen=True)
class Progress:
    """Where a summary stands: ``done`` of ``total`` model calls, and the seconds left at the pace so far."""

    stage: str  # "map" (a section), "reduce", "compare"
    done: int
    total: int
    eta_s: float | None


ProgressCallback = Callable[[Progress], None]


def document_pages(corpus: Corpus, doc: DocumentInfo, scope: Scope | None = None) -> list[PageText]:
    """The pages of ``doc`` as stored, in order, each one text again (chunks overlap: each character once)."""
    return pages_of(corpus.neighbours(doc.root, doc.source, range(doc.chunks), scope))


def pages_of(records: dict[int, Record]) -> list[PageText]:
    """Pages put back together from a document's chunks (``Corpus.neighbours``)."""
    chunks = sorted(
        (int(meta.get("page") or 0), int(meta.get("start") or 0), text, str(meta.get(CHUNK_ID, "")))
        for text, meta in records.values()
    )
    pages: dict[int, tuple[list[str], int, str]] = {}  # page -> (its texts, characters covered, first chunk id)
    for page, start, text, cid in chunks:
        parts, covered, first = pages.get(page, ([], 0, cid))
        end = start + len(text)
        if start < covered:
            text = text[covered - start :]
        elif parts:
            text = " " + text
        parts.append(text)
        pages[page] = (parts, max(covered, end), first)
    return [PageText(n, "".join(parts).strip(), first) for n, (parts, _, first) in sorted(pages.items())]


@dataclass(frozen=True)
class Section:
    """Consecutive pages (or one part of a long page) summarised in one prompt."""

    parts: tuple[tuple[int, str], ...]  # (page, text)

    @property
    def pages(self) -> tuple[int, ...]:
        return tuple(dict.fromkeys(page for page, _ in self.parts))

    def prompt_text(self) -> str:
        return "\n\n".join(f"[page {page}]\n{text}" for page, text in self.parts)


def sections_of(pages: Sequence[PageText], count_tokens: Callable[[str], int], budget: int) -> list[Section]:
    """Pages grouped in order into sections of at most ``budget`` tokens; a page longer than that is cut at
    paragraph (or sentence) ends into parts, each its own section."""
    sections: list[Section] = []
    current: list[tuple[int, str]] = []
    used = 0
    for page in pages:
        for part in _parts(page.text, count_tokens, budget):
            size = count_tokens(part) + 6
            if current and used + size > budget:
                sections.append(Section(tuple(current)))
                current, used = [], 0
            current.append((page.number, part))
            used += size
    if current:
        sections.append(Section(tuple(current)))
    return sections


def _parts(text: str, count_tokens: Callable[[str], int], budget: int) -> list[str]:
    if not text.strip():
        return []
    if count_tokens(text) <= budget:
        return [text]
    pieces = re.split(r"\n\s*\n", text)
    if len(pieces) == 1:
        pieces = re.split(r"(?<=[.!?])\s+", text)
    out: list[str] = []
    current = ""
    for piece in pieces:
        joined = f"{current}\n\n{piece}" if current else piece
        if current and count_tokens(joined) > budget:
            out.append(current)
            current = piece
        else:
            current = joined
    if current:
        out.append(current)
    # a single piece above the budget (one paragraph with no sentence end) is cut by characters
    return [p[i : i + budget * 3] for p in out for i in range(0, len(p), budget * 3)]


def points_grammar(pages: Sequence[int], most: int, many_pages: bool) -> str:
    """GBNF: one to ``most`` lines ``- sentence (p. N)``, N among ``pages`` (a list of them with ``many_pages``)."""
    page = " | ".join(f'"{p}"' for p in sorted(set(pages)))
    cites = 'page (", " page)*' if many_pages else "page"
    optional = " ".join(["point?"] * (most - 1))
    return (
        f"root ::= point {optional}\n"
        f'point ::= "- " words " (p. " {cites} ")\\n"\n'
        f"words ::= [^\\n()\\[\\]]{{8,{POINT_CHARS}}}\n"
        f"page ::= {page}\n"
    )


_POINT = re.compile(
    r"^\s*(?:[-*•]|\d+[.)])\s+(?P<text>.+?)\s*[(\[]\s*(?:p\.|pp\.|pages?|s\.)\s*"
    r"(?P<pages>[\d,\s\-–et and]+)[)\]]\.?\s*$",
    re.I,
)


def parse_points(output: str, allowed: Sequence[int]) -> list[Point]:
    """The model's points with the pages they cite (those among ``allowed``); a line of another shape is
    skipped, a point citing no allowed page keeps an empty ``pages`` (the check then looks for its page)."""
    points = []
    for line in output.splitlines():
        match = _POINT.match(line)
        if match is None:
            bare = re.match(r"^\s*(?:[-*•]|\d+[.)])\s+(.{8,}[.!?»)])\s*$", line)
            if bare:  # a whole sentence without its page (a server's model); a line cut short is left out
                points.append(Point(bare.group(1).strip(), ()))
            continue
        pages = tuple(dict.fromkeys(int(n) for n in re.findall(r"\d+", match.group("pages")) if int(n) in allowed))
        points.append(Point(_PAGE_IN_TEXT.sub("", match.group("text")).strip().rstrip(",;"), pages))
    return points


# "..., p. 2." written inside the point as well as after it
_PAGE_IN_TEXT = re.compile(r"[,;]?\s*\(?\b(?:p|pp|page)\.?\s*\d+(?:\s*[-,]\s*\d+)*\)?(?=\.?\s*$)", re.I)


def checked(
    points: Sequence[Point], texts: dict[int, str], candidates: Sequence[int]
) -> tuple[list[Point], SummaryCheck]:
    """Each point against the pages it cites (joined); one they do not back is cited to the page of
    ``candidates`` that backs it best, or dropped when none does."""
    report = SummaryCheck(written=len(points))
    kept: list[Point] = []
    for point in points:
        cited = [p for p in point.pages if p in texts]
        if cited and support(point.text, "\n".join(texts[p] for p in cited))[0]:
            kept.append(Point(point.text, tuple(cited)))
            continue
        checks = [(support(point.text, texts[p]), p) for p in candidates if p in texts]
        backing = [(overlap, p) for (ok, overlap), p in checks if ok]
        if backing:
            kept.append(Point(point.text, (max(backing)[1],)))
            report.recited += 1
        else:
            report.dropped += 1
    return kept, report


class SummaryCache:
    """``summaries.sqlite3`` beside the store: sections' points by the hash of what made them, summaries by
    document version. Mode 600, like every file of the store that holds document text."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = open_private(path, [])
        if self._db.execute("PRAGMA user_version").fetchone()[0] != CACHE_SCHEMA:  # older: a cache, made again
            for table in ("sections", "summaries"):
                self._db.execute(f"DROP TABLE IF EXISTS {table}")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS sections (key TEXT PRIMARY KEY, root TEXT, source TEXT, points TEXT, "
            "seconds REAL)"
        )
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS summaries (root TEXT, source TEXT, language TEXT, model TEXT, "
            "version TEXT, summary TEXT, PRIMARY KEY (root, source, language, model))"
        )
        self._db.execute(f"PRAGMA user_version = {CACHE_SCHEMA}")

    def close(self) -> None:
        self._db.close()

    def section(self, key: str) -> list[Point] | None:
        with self._lock:
            row = self._db.execute("SELECT points FROM sections WHERE key = ?", (key,)).fetchone()
        return [Point(p["text"], tuple(p["pages"]), p["supported"]) for p in json.loads(row[0])] if row else None

    def keep_section(self, key: str, doc: DocumentInfo, points: Sequence[Point], seconds: float) -> None:
        data = json.dumps([asdict(p) for p in points], ensure_ascii=False)
        with self._lock, _not_kept_on_error():
            self._db.execute(
                "INSERT OR REPLACE INTO sections VALUES (?, ?, ?, ?, ?)", (key, doc.root, doc.source, data, seconds)
            )

    def summary(self, doc: DocumentInfo, version: str, language: str, model: str) -> Summary | None:
        with self._lock:
            row = self._db.execute(
                "SELECT version, summary FROM summaries WHERE root = ? AND source = ? AND language = ? AND model = ?",
                (doc.root, doc.source, language, f"{model}/{MAP_VERSION}.{REDUCE_VERSION}"),
            ).fetchone()
        if row is None or row[0] != version:
            return None
        data = json.loads(row[1])
        data["points"] = [Point(p["text"], tuple(p["pages"]), p["supported"]) for p in data["points"]]
        data["check"] = SummaryCheck(**data["check"])
        return Summary(**data)

    def keep_summary(self, summary: Summary) -> None:
        data = json.dumps(summary.as_dict(), ensure_ascii=False)
        key = (summary.root, summary.source, summary.language, f"{summary.model}/{MAP_VERSION}.{REDUCE_VERSION}")
        with self._lock, _not_kept_on_error():
            self._db.execute(
                "INSERT OR REPLACE INTO summaries VALUES (?, ?, ?, ?, ?, ?)", (*key, summary.version, data)
            )

    def forget(self, keep: Iterable[tuple[str, str]]) -> int:
        """Drops what was written about documents no longer stored (their text must not outlive them)."""
        keep = set(keep)
        with self._lock:
            rows = self._db.execute("SELECT root, source FROM summaries UNION SELECT root, source FROM sections")
            gone = [r for r in rows.fetchall() if (r[0], r[1]) not in keep]
            for root, source in gone:
                for table in ("summaries", "sections"):
                    self._db.execute(f"DELETE FROM {table} WHERE root = ? AND source = ?", (root, source))  # noqa: S608
        return len(gone)


def find_document(corpus: Corpus, name: str, scope: Scope | None = None) -> DocumentInfo:
    """The stored document ``name`` names (its source path, or a file name that only one ends with)."""
    docs = corpus.documents(scope)
    exact = [d for d in docs if d.source == name or f"{d.root}/{d.source}" == name]
    found = exact or [d for d in docs if d.source.endswith("/" + name) or Path(d.source).name == name]
    if len(found) == 1:
        return found[0]
    if not found:
        raise SourcierError(f"no stored document is named {name!r}")
    names = ", ".join(sorted(d.source for d in found)[:5])
    raise SourcierError(f"{name!r} names {len(found)} documents ({names}): give its path as listed")


@contextmanager
def _not_kept_on_error() -> Iterator[None]:
    """A write to the summaries file that fails (a full disk, a read-only folder) costs the keeping, not the
    summary."""
    try:
        yield
    except sqlite3.Error as exc:
        log.warning("a summary was not kept: %s", exc)


class Summarizer:
    """Summaries and comparisons of stored documents with one model, kept in one cache."""

    def __init__(self, llm: ChatModel, corpus: Corpus, cache: SummaryCache | None) -> None:
        self.llm = llm
        self.corpus = corpus
        self.cache = cache

    def summarize(
        self,
        doc: DocumentInfo,
        language: str | None = None,
        scope: Scope | None = None,
        cancel: Cancellation | None = None,
        on_progress: ProgressCallback | None = None,
        refresh: bool = False,
    ) -> Summary:
        """The summary of ``doc`` (kept from before when its version, language and model are the same)."""
        records = self.corpus.neighbours(doc.root, doc.source, range(doc.chunks), scope)  # read once
        pages = pages_of(records)
        if not pages:
            raise SourcierError(f"{doc.source}: nothing stored to summarise")
        first = records[min(records)][1]
        version = str(first.get("file_hash") or doc.ingested_at)
        language = language or language_of(records[i] for i in sorted(records)[:LANGUAGE_CHUNKS])
        model = self.llm.describe()
        texts = {p.number: p.text for p in pages}
        if self.cache is not None and not refresh:
            kept = self.cache.summary(doc, version, language, model)
            if kept is not None:
                kept.cached, kept.page_texts = True, {p.number: p for p in pages}
                return kept
        sections = sections_of(pages, self.llm.prompter.count_tokens, SECTION_TOKENS)
        clock = _Clock(len(sections) + _reduce_calls([MAP_POINTS] * len(sections)), on_progress)
        summary = Summary(doc.root, doc.source, version, language, [], len(pages), len(sections), model)
        summary.page_texts = {p.number: p for p in pages}
        points: list[list[Point]] = []  # each section's
        for i, section in enumerate(sections, 1):
            if cancelled(cancel):
                summary.cancelled = True
                return summary
            found, reused = self._map(section, doc, language, texts, summary.check, cancel)
            summary.reused_sections += reused
            points.append(found)
            if i == len(sections):  # the points are counted: the reduce steps are known
                clock.total = clock.done + 1 + _reduce_calls([len(p) for p in points])
            clock.step("map", reused)
        summary.points = (
            self._reduce(points, language, texts, summary.check, cancel, clock) if not cancelled(cancel) else []
        )
        summary.cancelled = cancelled(cancel)
        summary.seconds = clock.model_seconds
        if self.cache is not None and not summary.cancelled and summary.points:
            self.cache.keep_summary(summary)
        return summary

    def compare(
        self,
        a: DocumentInfo,
        b: DocumentInfo,
        language: str | None = None,
        scope: Scope | None = None,
        cancel: Cancellation | None = None,
        on_progress: ProgressCallback | None = None,
    ) -> Comparison:
        """Two documents' summaries lined up topic by topic, each side cited to its own pages."""
        language = language or document_language(self.corpus, a, scope)
        first = self.summarize(a, language, scope, cancel, on_progress)
        second = self.summarize(b, language, scope, cancel, on_progress)
        comparison = Comparison(first, second, language, [])
        if first.cancelled or second.cancelled or cancelled(cancel):
            comparison.cancelled = True
            return comparison
        start = time.perf_counter()
        system = COMPARE_SYSTEM.format(rows=COMPARE_ROWS, language=LANGUAGE_NAMES[language],
                                       not_covered=NOT_COVERED[language])  # fmt: skip
        user = (
            f"Document A: {Path(a.source).name}\n{_listed(first.points)}\n\n"
            f"Document B: {Path(b.source).name}\n{_listed(second.points)}"
        )
        grammar = compare_grammar(_cited_pages(first.points), _cited_pages(second.points), language)
        output = self._generate(system, user, COMPARE_ANSWER_TOKENS, grammar, cancel)
        comparison.rows = parse_rows(output, first, second, language)
        comparison.seconds = first.seconds + second.seconds + time.perf_counter() - start
        comparison.cancelled = cancelled(cancel)
        if on_progress is not None:
            on_progress(Progress("compare", 1, 1, 0.0))
        return comparison

    def _map(
        self,
        section: Section,
        doc: DocumentInfo,
        language: str,
        texts: dict[int, str],
        report: SummaryCheck,
        cancel: Cancellation | None,
    ) -> tuple[list[Point], int]:
        """The checked points of one section (kept from before when the same text was summarised), and 1 when
        they were kept."""
        text = section.prompt_text()
        key = _hash(f"{MAP_VERSION}\n{self.llm.describe()}\n{language}\n{Path(doc.source).name}\n{text}")
        if self.cache is not None:
            kept = self.cache.section(key)
            if kept is not None:
                return kept, 1
        start = time.perf_counter()
        system = MAP_SYSTEM.format(points=MAP_POINTS, language=LANGUAGE_NAMES[language])
        user = f"Document: {Path(doc.source).name}\n\n{text}"
        grammar = points_grammar(section.pages, MAP_POINTS, many_pages=False)
        output = self._generate(system, user, MAP_ANSWER_TOKENS, grammar, cancel)
        if cancelled(cancel):
            return [], 0
        section_texts = {page: "\n".join(t for p, t in section.parts if p == page) for page in section.pages}
        points, check = checked(parse_points(output, section.pages), section_texts, section.pages)
        report.add(check)
        if self.cache is not None:
            self.cache.keep_section(key, doc, points, time.perf_counter() - start)
        return points, 0

    def _reduce(
        self,
        sections: list[list[Point]],
        language: str,
        texts: dict[int, str],
        report: SummaryCheck,
        cancel: Cancellation | None,
        clock: _Clock,
    ) -> list[Point]:
        """The summary's points, in the document's order: the sections in at most ``SUMMARY_POINTS`` runs of
        consecutive sections, each run condensed to its share of the points, so that every part of the document
        is in the summary (a model asked to choose among all the points keeps those of the first pages)."""
        summary: list[Point] = []
        for run, most in _runs(len(sections)):
            points = [p for section in sections[run] for p in section]
            summary.extend(self._condense(points, most, language, texts, report, cancel, clock))
            if cancelled(cancel):
                return []
        return summary

    def _condense(
        self,
        points: list[Point],
        most: int,
        language: str,
        texts: dict[int, str],
        report: SummaryCheck,
        cancel: Cancellation | None,
        clock: _Clock,
    ) -> list[Point]:
        """At most ``most`` points that say what ``points`` say (themselves when they are few enough); in rounds
        when they do not fit one prompt, each round's points checked against the pages they cite."""
        while len(points) > most and not cancelled(cancel):
            groups = _groups(points, self.llm.prompter.count_tokens, REDUCE_TOKENS)
            target = most if len(groups) == 1 else max(most, SUMMARY_POINTS // 2)
            reduced: list[Point] = []
            for group in groups:
                if cancelled(cancel):
                    return []
                if len(group) <= target:
                    reduced.extend(group)
                    continue
                said = "one point" if target == 1 else f"at most {target} points"
                system = REDUCE_SYSTEM.format(points=said, language=LANGUAGE_NAMES[language])
                allowed = _cited_pages(group)
                grammar = points_grammar(allowed, target, many_pages=True)
                output = self._generate(system, _listed(group), REDUCE_ANSWER_TOKENS, grammar, cancel)
                found, check = checked(parse_points(output, allowed), texts, allowed)
                report.add(check)
                reduced.extend(found or _spread(group, target))  # nothing backed: some of the group's own
                clock.step("reduce")
            if len(reduced) >= len(points):  # no progress (a model that repeats its input): stop here
                return _spread(reduced, most)
            points = reduced
        return points

    def _generate(
        self, system: str, user: str, max_tokens: int, grammar: str | None, cancel: Cancellation | None
    ) -> str:
        prompt = self.llm.prompter.render([{"role": "system", "content": system}, {"role": "user", "content": user}])
        decoding = self.llm.settings.llm.model_copy(update={"temperature": 0.0, "repeat_penalty": 1.0})
        return "".join(
            self.llm.stream(prompt, max_tokens=max_tokens, decoding=decoding, cancel=cancel, grammar=grammar)
        )


class _Clock:
    """Counts model calls and tells ``on_progress`` how many are done and the time left at the pace so far."""

    def __init__(self, total: int, on_progress: ProgressCallback | None) -> None:
        self.total, self.done, self.on_progress = max(total, 1), 0, on_progress
        self.start = time.perf_counter()
        self.model_seconds = 0.0
        self._worked = 0  # calls the model made (kept sections cost nothing)

    def step(self, stage: str, reused: int = 0) -> None:
        self.done += 1
        self._worked += 1 - reused
        self.model_seconds = time.perf_counter() - self.start
        self.total = max(self.total, self.done)
        if self.on_progress is not None:
            pace = self.model_seconds / self._worked if self._worked else None
            left = self.total - self.done
            self.on_progress(Progress(stage, self.done, self.total, pace * left if pace is not None else None))


def _runs(sections: int) -> list[tuple[slice, int]]:
    """``sections`` consecutive sections in at most ``SUMMARY_POINTS`` runs of about equal length (sections are
    about equal in tokens), each with its share of the summary's points."""
    runs = min(sections, SUMMARY_POINTS)
    bounds = [round(j * sections / runs) for j in range(runs + 1)] if runs else [0]
    return [
        (slice(bounds[j], bounds[j + 1]), SUMMARY_POINTS // runs + (j < SUMMARY_POINTS % runs)) for j in range(runs)
    ]


def _reduce_calls(counts: Sequence[int]) -> int:
    """About how many reduce calls sections with ``counts`` points take (for the progress bar; corrected as it
    goes): about 20 points fit one prompt."""
    calls = 0
    for run, most in _runs(len(counts)):
        points = sum(counts[run])
        while points > most:
            groups = max(1, -(-points // 20))
            calls += groups
            points = most if groups == 1 else groups * max(most, SUMMARY_POINTS // 2)
    return calls


def _spread(points: Sequence[Point], most: int) -> list[Point]:
    """At most ``most`` of ``points``, taken evenly from first to last."""
    if len(points) <= most:
        return list(points)
    return [points[i * len(points) // most] for i in range(most)]


def _groups(points: Sequence[Point], count_tokens: Callable[[str], int], budget: int) -> list[list[Point]]:
    groups: list[list[Point]] = [[]]
    used = 0
    for point in points:
        size = count_tokens(point.text) + 10
        if groups[-1] and used + size > budget:
            groups.append([])
            used = 0
        groups[-1].append(point)
        used += size
    return groups


def _listed(points: Sequence[Point]) -> str:
    return "\n".join(f"- {p.text}{_pages_said(p.pages)}" for p in points)


def _pages_said(pages: Sequence[int]) -> str:
    """' (p. 2, 7)'; nothing for a document without pages (text, Markdown: every chunk is on page 0)."""
    shown = [str(n) for n in pages if n]
    return f" (p. {', '.join(shown)})" if shown else ""


def _cited_pages(points: Sequence[Point]) -> list[int]:
    return sorted({page for p in points for page in p.pages}) or [1]


def compare_grammar(pages_a: Sequence[int], pages_b: Sequence[int], language: str) -> str:
    """GBNF: one to ``COMPARE_ROWS`` topics, each side a sentence citing its own document's pages or "not covered"."""
    optional = " ".join(["row?"] * (COMPARE_ROWS - 1))
    none = NOT_COVERED[language]
    return (
        f"root ::= row {optional}\n"
        'row ::= "* " words "\\nA: " side-a "\\nB: " side-b "\\n"\n'
        f'side-a ::= "{none}" | words " (p. " page-a (", " page-a)* ")"\n'
        f'side-b ::= "{none}" | words " (p. " page-b (", " page-b)* ")"\n'
        f"words ::= [^\\n()\\[\\]]{{8,{POINT_CHARS}}}\n"
        f"page-a ::= {' | '.join(f'{chr(34)}{p}{chr(34)}' for p in sorted(set(pages_a)))}\n"
        f"page-b ::= {' | '.join(f'{chr(34)}{p}{chr(34)}' for p in sorted(set(pages_b)))}\n"
    )


_SIDE = re.compile(r"^\s*(?P<which>[AB])\s*:\s*(?P<text>.+?)\s*$")


def parse_rows(output: str, a: Summary, b: Summary, language: str) -> list[Row]:
    """The comparison's topics, each side checked against its own document's cited pages."""
    rows: list[Row] = []
    topic: str | None = None
    sides: dict[str, Side | None] = {}
    for line in [*output.splitlines(), "* "]:
        if line.lstrip().startswith("*"):
            if topic and ("A" in sides or "B" in sides):
                rows.append(Row(topic, sides.get("A"), sides.get("B")))
            topic, sides = line.lstrip("* ").strip(), {}
            continue
        match = _SIDE.match(line)
        if match is None or topic is None:
            continue
        which, text = match.group("which"), match.group("text")
        summary = a if which == "A" else b
        sides[which] = _side(text, summary, language)
    return rows


def _side(text: str, summary: Summary, language: str) -> Side | None:
    if text.strip().lower().rstrip(".") in {NOT_COVERED[language], *NOT_COVERED.values()}:
        return None
    texts = {n: p.text for n, p in summary.page_texts.items()}
    parsed = parse_points(f"- {text}", list(texts))
    point = parsed[0] if parsed else Point(text, ())
    cited = [p for p in point.pages if p in texts]
    supported = bool(cited) and support(point.text, "\n".join(texts[p] for p in cited))[0]
    return Side(point.text, tuple(cited), supported)


def document_language(corpus: Corpus, doc: DocumentInfo, scope: Scope | None = None) -> str:
    """The language most of ``doc``'s first chunks are written in ('en' when they do not tell)."""
    return language_of(corpus.neighbours(doc.root, doc.source, range(min(doc.chunks, LANGUAGE_CHUNKS)), scope).values())


def language_of(records: Iterable[Record]) -> str:
    """The language most of these chunks are written in ('en' when they do not tell)."""
    counts: dict[str, int] = {}
    for _, meta in records:
        language = meta.get("language") or UNDETERMINED
        if language in LANGUAGE_NAMES:
            counts[language] = counts.get(language, 0) + 1
    return max(counts, key=lambda k: counts[k]) if counts else "en"


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def summary_cache(store_dir: Path) -> SummaryCache | None:
    """The store's summaries file, or None when it cannot be opened (a read-only store folder): summaries are
    then made each time, never kept."""
    try:
        return SummaryCache(store_dir / SUMMARIES_FILE)
    except (OSError, sqlite3.Error) as exc:
        log.warning("summaries will not be kept: cannot open %s (%s)", store_dir / SUMMARIES_FILE, exc)
        return None


def summary_text(points: Sequence[Point]) -> str:
    """The points as the CLI prints them: ``- statement (p. 3, 4)``."""
    return _listed(points)


# Questions about a whole document (folded: lower case, no accents). A word like "summary" alone is not enough:
# a filing's "summary compensation table" is a passage to find, not a document to summarise.
_SUMMARY_ASKED = [
    re.compile(p)
    for p in (
        r"\bsummari[sz](e|ing)\b",
        r"\b(give|write|make|provide|need|want|show)\b[^?.]{0,40}\b(summary|overview|synopsis|gist)\b",
        r"\b(main|key|important)\s+(points|takeaways|ideas|findings|risks|messages)\b",
        r"\bwhat\s+(is|are)\s+(this|these|the)\s+\w*\s*(document|report|file|paper|contract|policy|guide)s?\s+about\b",
        r"\btl;?dr\b",
        r"\bresum(e|er|ez)\b",
        r"\bsynthes(e|is)\b|\bsynthetis(e|er|ez)\b",
        r"\b(points?|idees?|risques?|messages?)\s+(principaux|principales|cles|essentiel(le)?s|majeurs)\b",
        r"\b(principaux|principales|grands?)\s+(points|idees|risques|messages|lignes)\b",
        r"\bde\s+quoi\s+(parle|traite)\b",
    )
]
_COMPARE_ASKED = [
    re.compile(p)
    for p in (
        r"\bcompar(e|er|ez|ing|ison|aison)\b",
        r"\bdifferen(ce|ces|t)\s+(between|entre)\b",
        r"\bhow\s+do(es)?\b[^?]{0,80}\bdiffer\b",
        r"\ben\s+quoi\b[^?]{0,80}\bdifferent",
    )
]
_NAME_STOP = {"the", "and", "for", "les", "des", "pdf", "doc", "docx", "txt", "html", "final", "version", "copy"}


def summary_kind(question: str) -> str | None:
    """'compare' or 'summary' when ``question`` asks for one (English or French), else None."""
    folded = fold(question)
    if any(p.search(folded) for p in _COMPARE_ASKED):
        return "compare"
    if any(p.search(folded) for p in _SUMMARY_ASKED):
        return "summary"
    return None


def documents_named(question: str, docs: Sequence[DocumentInfo]) -> list[DocumentInfo]:
    """The documents whose file name ``question`` says (at least half of the name's words, the best first;
    'the travel expenses policy' names travel-expenses.docx)."""
    words = set(re.findall(r"[a-z0-9]+", fold(question)))
    joined = "".join(re.findall(r"[a-z0-9]+", fold(question)))
    scored = []
    for doc in docs:
        tokens = [t for t in re.findall(r"[a-z0-9]+", fold(Path(doc.source).stem)) if len(t) > 2 and not t.isdigit()]
        tokens = [t for t in tokens if t not in _NAME_STOP]
        if not tokens:
            continue
        said = [t for t in tokens if t in words or (len(t) >= 6 and t in joined)]
        if said and len(said) / len(tokens) >= 0.5:
            first = min(joined.find(t) for t in said)  # named first, listed first ('compare A and B': A, B)
            scored.append((-len(said) / len(tokens), first, doc))
    scored.sort(key=lambda s: (s[0], s[1]))
    return [doc for _, _, doc in scored]


def with_progress(
    run: Callable[[ProgressCallback], Any], cancel: Cancellation, shown: Callable[[Progress], str]
) -> Generator[str, None, Any]:
    """``run(on_progress)`` in a thread, each progress it reports yielded as ``shown(progress)``; returns what
    ``run`` returned. Closed early, it cancels ``run`` and waits for it to stop (the model is given back)."""
    events: queue.Queue[Progress | None] = queue.Queue()
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            result["value"] = run(events.put)
        except BaseException as exc:  # raised again in the reader's thread
            result["error"] = exc
        finally:
            events.put(None)

    thread = threading.Thread(target=work, name="summary", daemon=True)
    thread.start()
    ended = False
    try:
        while (event := events.get()) is not None:
            yield shown(event)
        ended = True
    finally:
        if not ended:  # the reader stopped first
            cancel.cancel()
        thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


_NOTES = {
    "en": {"map": "sections summarised: {done} of {total}", "reduce": "the summary: {done} of {total} steps",
           "compare": "the comparison written", "left": ", about {left} left"},
    "fr": {"map": "sections résumées : {done} sur {total}", "reduce": "le résumé : étape {done} sur {total}",
           "compare": "la comparaison écrite", "left": ", encore {left} environ"},
}  # fmt: skip


def progress_note(progress: Progress, language: str) -> str:
    """Where a summary stands, in words ('sections summarised: 2 of 5, about 40 s left')."""
    notes = _NOTES.get(language, _NOTES["en"])
    text = notes[progress.stage].format(done=progress.done, total=progress.total)
    if progress.eta_s and progress.eta_s >= 1:
        text += notes["left"].format(left=duration_said(progress.eta_s))
    return text


def duration_said(seconds: float) -> str:
    """'40 s', or '3 min' from 90 seconds on."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def details_line(details: dict[str, Any]) -> str:
    """``Summary.details()`` (or a comparison's, with its two documents) in one line, for the terminal."""
    said = []
    for d in details["documents"] if details["kind"] == "compare" else [details]:
        c = d["check"]
        how = "kept from before" if d["cached"] else f"{d['seconds']:.0f} s"
        said.append(
            f"summary of {d['document']}: {_count(d['pages'], 'page')}, {_count(d['sections'], 'section')}, {how}; "
            "points checked "
            f"against their pages: {c['written']} written, {c['recited']} cited to another page, "
            f"{c['dropped']} left out"
        )
    return "; ".join(said)


def _count(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"
