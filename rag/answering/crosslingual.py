"""A question asked in one language about documents written in another: "Quel est le plafond d'hôtel par nuit
à Paris ?" over an English travel policy.

Neither search finds it as asked: the English embedder places a French question far from English passages,
and keyword search shares almost no words between the two ("plafond" / "cap"). So when the store holds
chunks in a language other than the question's (the ingest records each chunk's language), the model
translates the question into that language, in one short prompt (a few dozen tokens), and both are searched:
each search's rankings are fused (``Retriever.search``'s ``translations``) and each passage is reranked
against the question in its own language. The answer stays in the question's language; quotes stay as the
document wrote them. Measured in docs/measurements.md, "Questions in the other language".
"""

from __future__ import annotations

import re
from collections.abc import Collection, Sequence
from typing import Any

from rag.answering.followup import one_line_reply
from rag.settings import LLMSettings
from rag.text import LANGUAGE_NAMES, LANGUAGES, detect_language, fold

TRANSLATE_MAX_TOKENS = 64
TRANSLATE_SYSTEM = (
    "You translate the user's question into {target}, for a search in {target} documents such as policies, "
    "contracts, reports and papers: translate each term the way such documents write it. Keep names, numbers, "
    "codes and words in quotes as they are. Do not answer the question. Reply with the translated question only, "
    "on one line."
)
_PREFIX = re.compile(r"^\s*(translation|translated question|traduction|question)\s*:\s*", re.I)


def languages_to_search(question_language: str, store_languages: Collection[str] | None) -> list[str]:
    """The languages a question should also be searched in: those of the store's chunks other than the
    question's (every other language the service knows when the store cannot say)."""
    known = LANGUAGES if store_languages is None else [lang for lang in LANGUAGES if lang in store_languages]
    return [lang for lang in known if lang != question_language]


def translations_for(
    llm: Any, query: str, targets: Sequence[str], settings: LLMSettings, cancel: Any = None
) -> dict[str, str]:
    """``query`` translated by ``llm`` into each of the languages ``targets`` (``languages_to_search``):
    language -> translation (a useless reply is left out)."""
    found = {}
    for target in targets:
        translated = translate_question(llm, query, target, settings, cancel)
        if translated:
            found[target] = translated
    return found


def translation_messages(question: str, target: str) -> list[dict[str, str]]:
    """The chat messages that ask the model for ``question`` in the language ``target`` ('en' or 'fr')."""
    system = TRANSLATE_SYSTEM.format(target=LANGUAGE_NAMES[target])
    return [{"role": "system", "content": system}, {"role": "user", "content": question}]


def translate_question(llm: Any, question: str, target: str, settings: LLMSettings, cancel: Any = None) -> str | None:
    """``question`` in the language ``target``, written by ``llm`` (greedy); None when the reply is of no use:
    empty, far longer than the question, the question unchanged, not in ``target``, or not a question while
    the question is one (the model answered it instead)."""
    budget = min(TRANSLATE_MAX_TOKENS, 16 + len(question) // 2)
    line = one_line_reply(llm, translation_messages(question, target), budget, settings, _PREFIX, cancel)
    useless = (
        not line
        or len(line) > 3 * len(question) + 20
        or _words(line) == _words(question)
        or (len(_words(line)) >= 4 and detect_language(line) != target)
        or (question.rstrip().endswith("?") and not line.endswith("?"))
    )
    return None if useless else line


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", fold(text))
