"""Word-level text helpers shared by keyword search and citation checks (French and English), and the text a
chunk is searched as."""

from __future__ import annotations

import re
import threading
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


LANGUAGES = ("en", "fr")
LANGUAGE_NAMES = {"en": "English", "fr": "French"}  # as the prompts name them
_SNOWBALL = {"en": "english", "fr": "french"}
_STEMMERS = threading.local()  # language -> PyStemmer object, per thread (they are not thread-safe)


UNDETERMINED = "und"  # ISO 639-2: a text that does not show its language (a list of names, a table of figures)


def detect_language(text: str) -> str:
    """'fr' or 'en', from stop words and accents (French accents count twice; the two languages the service is
    measured on): a question's language, always decided ('en' when nothing tells)."""
    lowered = text.lower()
    folded = [fold(w) for w in _WORD.findall(lowered)]
    fr = sum(w in STOPWORDS_FR for w in folded) + 2 * len(re.findall(r"[éèêàçùâîôûœ]", lowered))
    en = sum(w in STOPWORDS_EN for w in folded)
    return "fr" if fr > en else "en"


_ET_AL = re.compile(r"\bet al\b\.?", re.I)


def text_language(text: str) -> str:
    """A chunk's language: 'fr' or 'en' when its text shows it clearly (at least 3 different stop words of one
    language, twice as many as of the other; 'et al.' does not count), else ``UNDETERMINED`` (references,
    author lists, figures: a few of them must not make an English store French)."""
    words = {fold(w) for w in _WORD.findall(_ET_AL.sub(" ", text.lower()))}
    fr, en = len(words & STOPWORDS_FR), len(words & STOPWORDS_EN)
    if max(fr, en) >= 3 and max(fr, en) >= 2 * min(fr, en):
        return "fr" if fr > en else "en"
    return UNDETERMINED


def _stemmer(language: str):  # noqa: ANN202 - a PyStemmer object
    """This thread's Snowball stemmer for ``language`` (made at its first use; gone with the thread)."""
    stemmers = _STEMMERS.__dict__
    if language not in stemmers:
        import Stemmer  # PyStemmer: the Snowball stemmers, compiled

        stemmers[language] = Stemmer.Stemmer(_SNOWBALL[language])
    return stemmers[language]


def keyword_tokens(text: str, language: str | None = None) -> list[str]:
    """Search terms of a text: its words without stop words, each cut by the Snowball stemmer of the text's
    language (``language``, else detected: 'fr' or 'en'), then folded (lower case, no accents: 'hôtels' and
    'Hotel' give 'hotel'). Elided articles ('l'hôtel', "d'hôtel") fall out as one-letter words."""
    words = []
    for w in _WORD.findall(text.lower()):
        folded = fold(w)
        if folded in STOPWORDS or (len(folded) < 2 and not folded.isdigit()):
            continue
        words.append(w)
    if not words:
        return []
    stems = _stemmer(language or detect_language(text)).stemWords(words)
    return [fold(s) if not s.isascii() else s for s in stems]


def search_text(text: str, context: str = "") -> str:
    """What a chunk is embedded, keyword-indexed and reranked as: its context header (written by the ingest
    into its metadata, see ``chunking.context_tokens``), then its own text."""
    return f"{context}\n\n{text}" if context else text
