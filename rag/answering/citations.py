"""Citation markers in an answer: parse them, map them to passages, and check each one's support.

The model is asked to cite passages as ``[n]``. Markers such as ``[2]``, ``[1, 3]`` or ``[1][3]`` are
read; a number that points to no passage is removed from the text and counted. Each (sentence,
passage) citation is checked lexically: the passage must contain enough of the sentence's content
words, and every number the sentence states. Citations that fail are flagged, not shown as proof.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.text import content_words

MARKER = re.compile(r"\[(\s*\d+\s*(?:[,;]\s*\d+\s*)*)\]")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# "1,577", "1.577" and the French "1 577" (thin or no-break spaces too) are one number.
_NUMBER = re.compile(r"\d{1,3}(?:[ \u00a0\u202f]\d{3})+(?!\d)|\d+(?:[.,]\d+)*")
_LEADING_MARKERS = re.compile(r"(?:\s*\[[\d,;\s]+\])+\.?\s*")


@dataclass(frozen=True)
class Citation:
    """One ``[n]`` in one sentence, and whether the passage supports that sentence."""

    number: int
    sentence: str
    supported: bool
    overlap: float


@dataclass
class CitationReport:
    text: str
    citations: list[Citation] = field(default_factory=list)
    invalid_markers: int = 0

    @property
    def cited(self) -> list[int]:
        """Passage numbers cited at least once, in order."""
        return sorted({c.number for c in self.citations})

    @property
    def unsupported(self) -> list[Citation]:
        return [c for c in self.citations if not c.supported]


# Number words of French and English, so that "trois jours" backs "3 jours". Left out on purpose:
# "un"/"une"/"one" (mostly articles) and "neuf" (also "new").
_NUMBER_WORDS = {
    **dict.fromkeys(["zero", "zéro"], "0"),
    **dict.fromkeys(["two", "deux"], "2"),
    **dict.fromkeys(["three", "trois"], "3"),
    **dict.fromkeys(["four", "quatre"], "4"),
    **dict.fromkeys(["five", "cinq"], "5"),
    **dict.fromkeys(["six"], "6"),
    **dict.fromkeys(["seven", "sept"], "7"),
    **dict.fromkeys(["eight", "huit"], "8"),
    **dict.fromkeys(["nine"], "9"),
    **dict.fromkeys(["ten", "dix"], "10"),
    **dict.fromkeys(["eleven", "onze"], "11"),
    **dict.fromkeys(["twelve", "douze"], "12"),
    **dict.fromkeys(["fifteen", "quinze"], "15"),
    **dict.fromkeys(["twenty", "vingt"], "20"),
    **dict.fromkeys(["thirty", "trente"], "30"),
    **dict.fromkeys(["hundred", "cent"], "100"),
}
_NUMBER_WORD = re.compile(r"\b(" + "|".join(sorted(_NUMBER_WORDS, key=len, reverse=True)) + r")\b", re.IGNORECASE)


def stated_numbers(text: str) -> set[str]:
    """Numbers stated in a text, digits or words, without thousands separators ("1,200" == "1200")."""
    digits = {re.sub(r"[.,\s]", "", n) for n in _NUMBER.findall(text)}
    return digits | {_NUMBER_WORDS[w.lower()] for w in _NUMBER_WORD.findall(text)}


def support(sentence: str, passage: str, min_overlap: float = 0.3) -> tuple[bool, float]:
    """Whether ``passage`` backs ``sentence``: shared content words and every stated number."""
    bare = MARKER.sub("", sentence)
    words = content_words(bare)
    overlap = len(words & content_words(passage)) / len(words) if words else 1.0
    numbers_ok = stated_numbers(bare) <= stated_numbers(passage)
    return overlap >= min_overlap and numbers_ok, round(overlap, 3)


def check_citations(answer: str, passages: Sequence[str], min_overlap: float = 0.3) -> CitationReport:
    """Parse the markers of ``answer`` against ``passages`` (numbered from 1) and check each one."""
    invalid = 0

    def keep_valid(match: re.Match[str]) -> str:
        nonlocal invalid
        numbers = [int(x) for x in re.findall(r"\d+", match.group(1))]
        valid = [n for n in numbers if 1 <= n <= len(passages)]
        invalid += len(numbers) - len(valid)
        return "".join(f"[{n}]" for n in dict.fromkeys(valid))

    text = MARKER.sub(keep_valid, answer)
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)  # a removed marker leaves no space before punctuation
    text = attach_filler_citations(text)
    citations = []
    for sentence in split_sentences(text):
        for n in dict.fromkeys(int(x) for x in re.findall(r"\[(\d+)\]", sentence)):
            ok, overlap = support(sentence, passages[n - 1], min_overlap)
            citations.append(Citation(n, sentence.strip(), ok, overlap))
    return CitationReport(text=text, citations=citations, invalid_markers=invalid)


# Words a model writes around markers without saying anything ("Citez [3][4].", "Sources: [1]", "See [2].").
_FILLER_WORDS = {
    "cite", "cited", "citez", "citer", "cité", "cités", "citation", "citations", "source", "sources", "see",
    "voir", "ref", "refs", "reference", "references", "référence", "références", "passage", "passages", "cf",
    "and", "et", "also", "aussi", "the", "les", "le", "la", "in", "dans", "this", "it", "is", "as", "c", "est",
    "ce", "cela", "ceci", "comme", "mentioned", "stated", "indicated", "shown", "mentionné", "mentionnée",
    "indiqué", "indiquée", "précisé", "according", "to", "selon", "from", "de", "du", "des", "par", "by",
    "qui", "that", "which", "cites", "mentionne", "mentions", "states", "indique", "indicates", "says",
    "dit", "cette", "information", "informations", "contains", "contient", "là", "here", "ici", "en",
    "are", "sont", "was", "été", "a", "où", "where", "found", "trouve", "trouvée", "provides", "fournit",
    "can", "be", "peut", "être", "on", "se", "retrouve", "retrouver", "given", "donnée",
}  # fmt: skip
_SEPARATED = re.compile(r"((?<=[.!?])\s+|\n+)")


def is_filler(sentence: str) -> bool:
    """A sentence made only of citation markers and words that say nothing ("Sources: [1]", "[2][3].")."""
    if not MARKER.search(sentence):
        return False
    return all(w in _FILLER_WORDS for w in re.findall(r"\w+", MARKER.sub("", sentence).lower()))


def attach_filler_citations(text: str) -> str:
    """Give the markers of each filler sentence to the sentence before it and drop the filler's words:
    "It lasted 47 minutes. Citez [3][4]." becomes "It lasted 47 minutes [3][4].", so the citations are
    judged (and shown) against the claim they were written for."""
    parts = _SEPARATED.split(text) + [""]
    pairs = [[parts[i], parts[i + 1]] for i in range(0, len(parts) - 1, 2)]  # [sentence, separator after it]
    kept: list[list[str]] = []
    for sentence, separator in pairs:
        if kept and kept[-1][0].strip() and is_filler(sentence):
            markers = "".join(f"[{n}]" for n in dict.fromkeys(re.findall(r"\[(\d+)\]", sentence)))
            head = re.match(r"(.*?)([.!?:;]*)$", kept[-1][0].rstrip(), re.DOTALL)
            assert head is not None
            claim = head.group(1).rstrip()
            kept[-1][0] = f"{claim}{'' if claim.endswith(']') else ' '}{markers}{head.group(2)}"
            kept[-1][1] = separator
            continue
        kept.append([sentence, separator])
    return "".join(sentence + separator for sentence, separator in kept)


def split_sentences(text: str) -> list[str]:
    """Sentences, with a marker written after the full stop ("... 2019. [1]") kept with its sentence."""
    merged: list[str] = []
    for part in SENTENCE_END.split(text):
        lead = _LEADING_MARKERS.match(part)
        if lead and merged:
            merged[-1] += " " + lead.group(0).strip()
            part = part[lead.end() :]
        if part.strip():
            merged.append(part)
    return merged


def support_spans(sentences: Sequence[str], passage: str) -> list[tuple[int, int]]:
    """Character spans of ``passage`` whose words back the given sentences (shared content words and
    numbers), merged when adjacent: what the page highlights as the support of a citation."""
    wanted: set[str] = set()
    for sentence in sentences:
        bare = MARKER.sub("", sentence)
        wanted |= content_words(bare) | stated_numbers(bare)
    spans: list[tuple[int, int]] = []
    for match in _SUPPORT_TOKEN.finditer(passage):
        token = match.group(0)
        if content_words(token) & wanted or token.replace(",", "").replace(".", "") in wanted:
            if spans and passage[spans[-1][1] : match.start()].strip() == "":
                spans[-1] = (spans[-1][0], match.end())
            else:
                spans.append((match.start(), match.end()))
    return spans


_SUPPORT_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|\w+", re.UNICODE)
