"""Follow-up questions that stand on their own: "and in Berlin?" is searched as "What is the hotel cap per
night in Berlin?", written by the model from the conversation (a short prompt, a few dozen tokens).

Without it, a follow-up is searched as the previous question followed by the new one: the previous
question's words then compete with the new one's (measured in docs/measurements.md, "Follow-ups").
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from rag.packing import Turn
from rag.settings import LLMSettings

REWRITE_MAX_TOKENS = 48
REWRITE_SYSTEM = (
    "You rewrite the user's last question so that it can be understood without the conversation: replace "
    "pronouns and elliptical phrases with what they refer to. Keep the question's language and meaning, do "
    "not answer it. Reply with the rewritten question only, on one line."
)
_ANSWER_CHARS = 300  # of each earlier answer, enough to name what "it" or "she" refers to
_PREFIX = re.compile(r"^\s*(rewritten question|standalone question|question( réécrite)?)\s*:\s*", re.I)


def concatenated_query(history: Sequence[Turn], question: str) -> str:
    """What a follow-up is searched as without the model: the previous question, then the new one."""
    return f"{history[-1].question} {question}" if history else question


def rewrite_messages(history: Sequence[Turn], question: str, turns: int = 2) -> list[dict[str, str]]:
    """The chat messages that ask the model for a standalone version of ``question``."""
    lines = []
    for turn in history[-turns:]:
        answer = " ".join(turn.answer.split())
        answer = answer if len(answer) <= _ANSWER_CHARS else answer[: _ANSWER_CHARS - 3] + "..."
        lines += [f"User: {turn.question}", f"Assistant: {answer}"]
    body = "Conversation:\n" + "\n".join(lines) + f"\n\nLast question: {question}\n\nRewritten question:"
    return [{"role": "system", "content": REWRITE_SYSTEM}, {"role": "user", "content": body}]


def standalone_question(
    llm: Any, history: Sequence[Turn], question: str, settings: LLMSettings, cancel: Any = None
) -> str:
    """The follow-up rewritten by ``llm`` to stand on its own; the question itself when there is no
    history, and the concatenation when the model's reply is unusable (empty, or far longer than a
    question)."""
    if not history:
        return question
    prompt = llm.prompter.render(rewrite_messages(history, question))
    decoding = settings.model_copy(update={"temperature": 0.0})
    text = "".join(llm.stream(prompt, max_tokens=REWRITE_MAX_TOKENS, decoding=decoding, cancel=cancel))
    line = next((s for s in text.strip().splitlines() if s.strip()), "")
    line = _PREFIX.sub("", line).strip().strip('"«»“”').strip()
    if not line or len(line) > 4 * (len(question) + len(history[-1].question)):
        return concatenated_query(history, question)
    return line
