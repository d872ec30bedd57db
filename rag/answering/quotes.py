"""Quote, then answer: the answer style that lets a small model be checked.

The model first copies, word for word, the sentence of one numbered passage that answers the question,
then writes a short answer. A local model is held to that shape by a grammar (llama.cpp GBNF) whose only
allowed quotes are runs of the passages' own clauses, each behind its own passage's number: the quote is
verbatim and its number real by construction. Output from a model that was not constrained (an LLM server
without grammar support) is parsed the same way and its quote searched in the passage it names, tolerant of
case, accents, spacing, line breaks and hyphenation; a quote not found there is a failed citation.

The raw output looks like::

    [2] "Le rapport d'incident indique une panne de 47 minutes."
    Answer: 47 minutes.

or ``NONE`` when no passage answers the question.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from rag.answering.citations import stated_numbers

NONE_MARK = "NONE"
ANSWER_LABEL = "Answer: "
# A quote is a run of whole clauses of one passage: text is cut after . ! ? , ; : and at line breaks
# (not a word hyphenated across lines).
_CLAUSE_END = re.compile(r"(?<=[.!?,;:])\s+|(?<![-\u00ad])[ \t]*\n\s*")
# Longest run of clauses a quote may be: about 40 tokens of the default model, 3-4 s to copy on 2 cores.
MAX_QUOTE_CHARS = 160
MIN_QUOTE_CHARS = 8
SENTENCE_END = re.compile(r"[.!?][\"'’”»)\]]*$")


@dataclass(frozen=True)
class Quote:
    """The sentence an answer rests on: passage ``number`` (from 1), its text, and where it lies in the
    passage (``start``/``end``, or None when the quote is not in it)."""

    number: int
    text: str
    start: int | None = None
    end: int | None = None

    @property
    def verbatim(self) -> bool:
        return self.start is not None


@dataclass(frozen=True)
class QuotedOutput:
    """A parsed model output: the quote and short answer, or ``found=False`` (the model wrote NONE, or an
    output of no recognisable shape, whose words are kept in ``answer``)."""

    found: bool
    answer: str
    quote: Quote | None = None
    well_formed: bool = True


def clause_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) of each clause of ``text``, in order; a quote is a run of consecutive ones. A piece with no
    letter or digit (a stray ", " or "-") belongs to the clause before it, so runs never skip text."""
    spans: list[tuple[int, int]] = []
    for start, end in _pieces(text, 0, len(text), _CLAUSE_END):
        if any(ch.isalnum() for ch in text[start:end]):
            spans.append((start, end))
        elif spans:
            spans[-1] = (spans[-1][0], end)
    return spans


def _pieces(text: str, start: int, end: int, boundary: re.Pattern[str]) -> Iterator[tuple[int, int]]:
    cursor = start
    for m in boundary.finditer(text, start, end):
        yield from _stripped(text, cursor, m.start())
        cursor = m.end()
    yield from _stripped(text, cursor, end)


def _stripped(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    if end > start:
        yield start, end


def answer_grammar(passages: Sequence[str]) -> str:
    """GBNF for "[n] \"<a run of clauses of passage n>\"\\nAnswer: <one line>" or "NONE".

    Citation numbers outside the passages are impossible, and so is a quote that is not a run of whole
    consecutive clauses of one sentence of its passage (a line of a table or list is a sentence), at most
    ``MAX_QUOTE_CHARS`` long: it may start at any clause and stop after any, never past its sentence's end
    (the quote shows the passage's text with blanks and line breaks as single spaces, hyphenated words joined,
    and its inner double quotes left out, since they close the quote). The answer is one line that does not start with
    a bracket or a blank, so an answer of markers only cannot be written. A passage with nothing to quote (no
    clause of ``MIN_QUOTE_CHARS``) cannot be cited; with no passage to cite, only "NONE" can be written.
    """
    rules = [
        f'root ::= quoted | "{NONE_MARK}"',
        f'quoted ::= "[" cite "\\"\\n{ANSWER_LABEL}" answer',
        'answer ::= [^\\n\\[\\] "] [^\\n]*',
    ]
    cites = []
    for number, text in enumerate(passages, 1):
        clauses = [c for c in (quotable(text[s:e]) for s, e in clause_spans(text)) if c]
        runs = dict.fromkeys(_gbnf_literal(run) for run in quote_runs(clauses))
        if not runs:  # nothing quotable (a heading, a caption, a cell): this passage cannot be cited
            continue
        rules.append(f"p{number} ::= " + " | ".join(runs))
        cites.append(f'"{number}] \\"" p{number}')
    if not cites:
        return f'root ::= "{NONE_MARK}"\n'
    rules.insert(2, "cite ::= " + " | ".join(cites))
    return "\n".join(rules) + "\n"


def quote_runs(clauses: Sequence[str], max_chars: int = MAX_QUOTE_CHARS) -> Iterator[str]:
    """Every quote allowed from these clauses: a run of consecutive clauses of one sentence, at most
    ``max_chars`` long (a single longer clause is allowed alone: copying costs a token every few characters)
    and at least ``MIN_QUOTE_CHARS`` (a quote of "2," says nothing)."""
    for i, clause in enumerate(clauses):
        run = clause
        for nxt in [None, *clauses[i + 1 :]]:
            if nxt is not None:
                if SENTENCE_END.search(run) or len(run) + 1 + len(nxt) > max_chars:
                    break
                run = f"{run} {nxt}"
            if len(run) >= MIN_QUOTE_CHARS:
                yield run


def quotable(text: str) -> str:
    """A clause as a quote holds it: hyphenated words joined, inner double quotes out, blanks single, and no
    control character or lone surrogate (nothing a model writes; a NUL makes llama.cpp abort)."""
    text = "".join(ch for ch in _folded_hyphens(text) if not _unwritable(ch))
    return " ".join(text.replace('"', "").split())


def _unwritable(ch: str) -> bool:
    """A control character that is not a blank, or a lone surrogate: left out of quotes and of comparisons."""
    return not ch.isspace() and unicodedata.category(ch) in ("Cc", "Cs")


# A word hyphenated across a line break: the hyphen and the break, which a reader copies as nothing.
_HYPHEN_BREAK = re.compile(r"(?<=\w)[-\u00ad][ \t\r]*\n\s*(?=\w)")


def _folded_hyphens(text: str) -> str:
    """Words hyphenated across a line break joined ("exam-\nple" -> "example"), as a reader would copy them."""
    return _HYPHEN_BREAK.sub("", text)


def _gbnf_literal(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp"):
            out.append(f"\\x{ord(ch):02x}" if ord(ch) < 256 else f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


_QUOTED = re.compile(r'^\s*\[(\d+)\]\s*["“«]\s*(.*?)\s*["”»]\s*\n+\s*(?:answer|réponse)\s*:\s*(.*)\s*$', re.I | re.S)
_QUOTE_ALONE = re.compile(r'^\s*\[(\d+)\]\s*["“«]\s*(.*?)\s*["”»]?\s*$', re.S)


def parse_quoted(output: str, passages: Sequence[str]) -> QuotedOutput:
    """The quote and short answer in ``output``, the quote located in the passage it cites."""
    text = output.strip()
    if text == NONE_MARK or not text:
        return QuotedOutput(found=False, answer="")
    m = _QUOTED.match(text)
    if m is not None:
        number, quoted, answer = int(m.group(1)), m.group(2), m.group(3).strip()
    elif (alone := _QUOTE_ALONE.match(text)) is not None:  # an unconstrained model that stopped after its quote
        number, quoted = int(alone.group(1)), alone.group(2)
        answer = quoted
    else:
        return QuotedOutput(found=False, answer=text, well_formed=False)
    span = locate_quote(quoted, passages[number - 1]) if 1 <= number <= len(passages) else None
    quote = Quote(number, quoted, *span) if span else Quote(number, quoted)
    return QuotedOutput(found=True, answer=answer, quote=quote)


def locate_quote(quote: str, passage: str) -> tuple[int, int] | None:
    """Where ``quote`` lies in ``passage`` (character span), comparing both folded: case, accents, runs of
    blanks and line breaks, words hyphenated across a line break, typographic quotes and apostrophes,
    and the double quotes and control characters the grammar leaves out. None when it is not there."""
    needle, _ = _folded(quote)
    if len(needle) < 3:
        return None
    hay, where = _folded(passage)
    at = hay.find(needle)
    if at < 0:
        return None
    return where[at], where[at + len(needle) - 1] + 1


_SAME = str.maketrans({"’": "'", "‘": "'", "`": "'", "“": "", "”": "", '"': "", "«": "", "»": "", "\u00ad": ""})


def _folded(text: str) -> tuple[str, list[int]]:
    """``text`` folded for comparison, and for each folded character the index of its original one."""
    out: list[str] = []
    where: list[int] = []
    skip = {m.start(): m.end() for m in _HYPHEN_BREAK.finditer(text)}  # "exam-\nple" reads "example"
    i = 0
    while i < len(text):
        ch = text[i]
        if i in skip:
            i = skip[i]
            continue
        if _unwritable(ch):
            i += 1
            continue
        if ch.isspace():
            if out and out[-1] != " ":
                out.append(" ")
                where.append(i)
            i += 1
            continue
        for c in unicodedata.normalize("NFKD", ch.translate(_SAME).lower()):
            if not unicodedata.combining(c):
                out.append(c)
                where.append(i)
        i += 1
    if out and out[-1] == " ":
        out.pop()
        where.pop()
    return "".join(out), where


# -- the short answer against its quote ---------------------------------------------------------------------

_NEGATIONS = frozenset(
    ["not", "no", "never", "none", "nobody", "nothing", "neither", "nor", "cannot", "ne", "n'", "pas", "jamais"]
    + ["aucun", "aucune", "rien", "personne", "ni", "guère", "nullement", "sans"]
)
_WORDS = re.compile(r"[\w'’]+", re.UNICODE)


@dataclass(frozen=True)
class Mismatch:
    """One reason the answer may not match its quote: ``kind`` is "number", "negation", "name" or
    "not_in_passage"; ``value`` the number, name or passage number concerned ("" for a negation)."""

    kind: str
    value: str = ""

    def __str__(self) -> str:
        return {
            "number": f"the number {self.value} is not in the quote",
            "negation": "the answer and its quote disagree on a negation",
            "name": f"the name {self.value} is not in the quote",
            "not_in_passage": f"the quote is not in passage [{self.value}]",
        }[self.kind]


def answer_mismatches(answer: str, quote: str, question: str = "") -> list[Mismatch]:
    """Why the short answer may not match its quote (empty when nothing is suspect): a number the quote does
    not hold, a negation one of them has and the other not, a name (a capitalised word inside a sentence)
    that neither the quote nor the question holds. Cheap rules: a flag for the reader, never a verdict."""
    problems = [Mismatch("number", n) for n in sorted(stated_numbers(answer) - stated_numbers(quote))]
    if _negated(answer) != _negated(quote):
        problems.append(Mismatch("negation"))
    known = _folded(quote)[0] + " " + _folded(question)[0]
    problems += [Mismatch("name", name) for name in _names(answer) if _folded(name)[0] not in known]
    return problems


def _negated(text: str) -> bool:
    words = [w.lower().replace("’", "'") for w in _WORDS.findall(text)]
    return any(w in _NEGATIONS or w.endswith("n't") or w.startswith("n'") for w in words)


def _names(text: str) -> list[str]:
    """Capitalised words that are not the first word of a sentence."""
    names = []
    for sentence in re.split(r"(?<=[.!?])\s+", text.strip()):
        words = _WORDS.findall(sentence)
        names += [w for w in words[1:] if w[:1].isupper() and not w.isupper() and len(w) > 1]
    return names


# -- what the reader sees while the model writes ------------------------------------------------------------

_HEAD = re.compile(r'\s*\[(\d+)\]\s*["“«]')
_LABEL = re.compile(r'\s*["”»]?\s*\n\s*(?:answer|réponse)\s*:\s*', re.I)


class QuotedDisplay:
    """Turns the raw output, piece by piece, into what is shown: ``«quote» [n]``, a blank line, the answer.

    ``feed`` returns the text to show for each raw piece (often ""); ``end`` what is left to show. "NONE"
    shows nothing (the caller shows its own "not found" sentence); output of another shape (a model that was
    not constrained) is shown as it came.
    """

    def __init__(self) -> None:
        self._buffer = ""
        self._phase = "head"
        self.none = False

    @property
    def answering(self) -> bool:
        """Whether the short answer (after the quote and its label) has begun."""
        return self._phase in ("answer", "raw")

    def feed(self, piece: str) -> str:
        self._buffer += piece
        out = []
        while True:
            shown, progressed = self._step()
            out.append(shown)
            if not progressed:
                return "".join(out)

    def end(self) -> str:
        rest, self._buffer = self._buffer, ""
        if self._phase == "head":
            self.none = rest.strip() == NONE_MARK
            return "" if self.none else rest
        if self._phase == "quote":
            return rest.rstrip('"”» \n') + "»"
        if self._phase == "label":
            return _LABEL.sub("", rest, count=1).lstrip('"”» \n')
        return rest

    def _step(self) -> tuple[str, bool]:
        b = self._buffer
        if self._phase == "head":
            m = _HEAD.match(b)
            if m:
                self._buffer, self._phase, self._number = b[m.end() :], "quote", m.group(1)
                return "«", True
            if NONE_MARK.startswith(b.strip()) or re.fullmatch(r"\s*\[\d*\]?\s*", b):
                return "", False  # not decided yet
            self._buffer, self._phase = "", "raw"
            return b, True
        if self._phase == "quote":
            close = b.find('"')  # the grammar's delimiter (a passage's own « » or “ ” stay inside)
            if close < 0:
                keep = b.rstrip(" ")  # a closing quote may follow the blanks
                self._buffer = b[len(keep) :]
                return keep, False
            self._buffer, self._phase = b[close:], "label"
            return b[:close].rstrip() + f"» [{self._number}]\n\n", True
        if self._phase == "label":
            m = _LABEL.match(b)
            if m and m.end() < len(b):  # blanks after the label may still come
                self._buffer, self._phase = b[m.end() :], "answer"
                return "", True
            if len(b) < 16 and "answer:".startswith(b.strip('"”» \n').lower()[:7]):
                return "", False
            self._buffer, self._phase = "", "answer"
            return b.lstrip('"”» \n'), True
        self._buffer = ""
        return b, False
