"""Follow-up questions that stand on their own: "and in Berlin?" is searched as "What is the hotel cap per
night in Berlin?", written by the model from the conversation (a short prompt, a few dozen tokens).

Without it, a follow-up is searched as the previous question followed by the new one: the previous
question's words then compete with the new one's (measured in docs/measurements.md, "Follow-ups").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rag.answering.packing import Turn
from rag.settings import LLMSettings

REWRITE_MAX_TOKENS = 48
REWRITE_SYSTEM = {
    "en": "You rewrite the user's last question so that it can be understood without the conversation: "
    "replace pronouns and elliptical phrases with what they refer to. Keep its meaning, do not answer it. "
    "Reply with the rewritten question only, on one line.",
    "fr": "Tu réécris la dernière question de l'utilisateur pour qu'elle se comprenne sans la conversation : "
    "remplace les pronoms et les tournures elliptiques par ce qu'ils désignent. Garde son sens, n'y réponds "
    "pas. Réponds seulement par la question réécrite, en français, sur une ligne.",
}
_LABELS = {
    "en": ("Conversation", "User", "Assistant", "Last question", "Rewritten question"),
    "fr": ("Conversation", "Utilisateur", "Assistant", "Dernière question", "Question réécrite"),
}
_ANSWER_CHARS = 300  # of each earlier answer, enough to name what "it" or "she" refers to
_PREFIX = re.compile(
    r"^\s*(rewritten question|standalone question|question( réécrite)?|dernière question)\s*:\s*", re.I
)


def concatenated_query(history: Sequence[Turn], question: str) -> str:
    """What a follow-up is searched as without the model: the previous question, then the new one."""
    return f"{history[-1].question} {question}" if history else question


def rewrite_messages(
    history: Sequence[Turn], question: str, language: str = "en", turns: int = 2
) -> list[dict[str, str]]:
    """The chat messages that ask the model, in the question's language, for a standalone ``question``."""
    title, user, assistant, last, rewritten = _LABELS.get(language, _LABELS["en"])
    lines = []
    for turn in history[-turns:]:
        answer = " ".join(turn.answer.split())
        answer = answer if len(answer) <= _ANSWER_CHARS else answer[: _ANSWER_CHARS - 3] + "..."
        lines += [f"{user}: {turn.question}", f"{assistant}: {answer}"]
    body = f"{title}:\n" + "\n".join(lines) + f"\n\n{last}: {question}\n\n{rewritten}:"
    system = REWRITE_SYSTEM.get(language, REWRITE_SYSTEM["en"])
    return [{"role": "system", "content": system}, {"role": "user", "content": body}]


def standalone_question(
    llm: Any, history: Sequence[Turn], question: str, settings: LLMSettings, cancel: Any = None, language: str = "en"
) -> str:
    """The follow-up rewritten by ``llm`` to stand on its own. Without history, the question itself; when the
    model's reply is of no use, the previous question followed by the new one (measured the better search of
    the two otherwise): a reply that is empty, far longer than a question, the follow-up unchanged (the model
    saw nothing to resolve, or failed to), or not a question while the follow-up is one (an answer)."""
    if not history:
        return question
    messages = rewrite_messages(history, question, language)
    line = one_line_reply(llm, messages, REWRITE_MAX_TOKENS, settings, _PREFIX, cancel)
    useless = (
        not line
        or len(line) > 4 * (len(question) + len(history[-1].question))
        or _folded(line) == _folded(question)
        or (question.rstrip().endswith("?") and not line.endswith("?"))
    )
    return concatenated_query(history, question) if useless else line


def one_line_reply(
    llm: Any,
    messages: Sequence[dict[str, str]],
    max_tokens: int,
    settings: LLMSettings,
    prefix: re.Pattern[str],
    cancel: Any = None,
) -> str:
    """The model's greedy reply to ``messages``: its first non-empty line, without a leading label the model
    may add (``prefix``, "Rewritten question:") or the quotes around it ('' when it wrote nothing). Asked of
    the model's context aside (``ChatModel.aside``), so the answers' cached prompt stays."""
    prompt = llm.prompter.render(messages)
    decoding = settings.model_copy(update={"temperature": 0.0})
    text = "".join(llm.aside().stream(prompt, max_tokens=max_tokens, decoding=decoding, cancel=cancel))
    line = next((s for s in text.strip().splitlines() if s.strip()), "")
    return prefix.sub("", line).strip().strip('"«»“”').strip()


def _folded(text: str) -> str:
    return " ".join(re.findall(r"\w+", text.casefold()))
