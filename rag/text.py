"""Word-level text helpers shared by keyword search and citation checks (French and English), and the text a
chunk is searched as."""

from __future__ import annotations

import re
import unicodedata

_WORD = re.compile(r"\w+", re.UNICODE)

# Content-free words, ignored by keyword search and citation checks (and counted to tell the language).
STOPWORDS_EN = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "been",
        "but",
        "by",
        "can",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "he",
        "her",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "may",
        "more",
        "most",
        "no",
        "not",
        "of",
        "on",
        "or",
        "our",
        "she",
        "so",
        "such",
        "than",
        "that",
        "the",
        "their",
        "them",
        "then",
        "there",
        "these",
        "they",
        "this",
        "to",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "will",
        "with",
        "would",
        "you",
        "your",
    ]
)
STOPWORDS_FR = frozenset(
    [
        "au",
        "aux",
        "avec",
        "ce",
        "ces",
        "cet",
        "cette",
        "dans",
        "de",
        "des",
        "du",
        "elle",
        "en",
        "est",
        "et",
        "il",
        "ils",
        "je",
        "la",
        "le",
        "les",
        "leur",
        "leurs",
        "lui",
        "mais",
        "me",
        "meme",
        "mes",
        "moi",
        "mon",
        "ne",
        "nos",
        "notre",
        "nous",
        "on",
        "ou",
        "par",
        "pas",
        "plus",
        "pour",
        "qu",
        "que",
        "qui",
        "sa",
        "se",
        "ses",
        "son",
        "sont",
        "sur",
        "ta",
        "te",
        "tes",
        "toi",
        "ton",
        "tu",
        "un",
        "une",
        "vos",
        "votre",
        "vous",
        "y",
        "etre",
        "fait",
        "peut",
        "aussi",
        "ainsi",
        "donc",
        "car",
        "comme",
        "tres",
        "sans",
        "sous",
        "entre",
    ]
)
STOPWORDS = STOPWORDS_EN | STOPWORDS_FR


def fold(text: str) -> str:
    """Lower case without accents, so 'Été' and 'ete' compare equal."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


def content_words(text: str) -> set[str]:
    return {w for w in _WORD.findall(fold(text)) if len(w) > 2 and w not in STOPWORDS and not w.isdigit()}


def keyword_tokens(text: str) -> list[str]:
    """Search terms of a text: folded words without stop words, plural -s/-x stripped (FR and EN)."""
    out = []
    for w in _WORD.findall(fold(text)):
        if w in STOPWORDS or (len(w) < 2 and not w.isdigit()):
            continue
        if len(w) > 4 and w[-1] in "sx" and not w.isdigit():
            w = w[:-1]
        out.append(w)
    return out


def search_text(text: str, context: str = "") -> str:
    """What a chunk is embedded, keyword-indexed and reranked as: its context header (written by the ingest
    into its metadata, see ``chunking.context_tokens``), then its own text."""
    return f"{context}\n\n{text}" if context else text
