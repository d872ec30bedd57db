"""Fit system prompt + history + passages + question + the answer's budget into the context window.

Tokens are counted by rendering the real prompt with the model's own template and tokenizer, so the
count is exact for a local model; for an LLM server (whose template and tokenizer are its own) a
conservative estimate is used (see ``rag.llm_server``). What does not fit is dropped in this order: the lowest-ranked
passages first, then the oldest turns of the conversation. A question that does not fit even alone
is refused with a clear error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from rag.errors import SourcierError
from rag.llm.base import Prompt, Prompter


class PromptTooLongError(SourcierError):
    """The question alone (with the system prompt and the answer budget) exceeds the context window."""


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk, as given to the model and shown to the user."""

    chunk_id: str
    text: str
    source: str
    page: int
    start: int
    end: int
    score: float
    root: str = ""
    similarity: float | None = None  # cosine similarity to the question, when vector search found it
    rerank_score: float | None = None  # the cross-encoder's relevance (0-1), when a reranker ordered it
    context: str = ""  # the chunk's context header (document, section): searched with it, not shown as its text
    language: str = ""  # 'en' or 'fr', as the ingest detected it ('' in stores written before it recorded it)


@dataclass(frozen=True)
class Turn:
    """One earlier exchange of the conversation."""

    question: str
    answer: str


@dataclass
class PackedPrompt:
    prompt: Prompt
    passages: list[Passage]
    dropped_passages: int = 0
    dropped_turns: int = 0
    history: list[Turn] = field(default_factory=list)

    @property
    def prompt_tokens(self) -> int:
        return self.prompt.size


def format_passages(passages: Sequence[Passage]) -> str:
    """Passages numbered [1].. in rank order, each with its file and page."""
    blocks = []
    for n, p in enumerate(passages, 1):
        where = f"{p.source}, page {p.page}" if p.page else p.source
        blocks.append(f"[{n}] ({where})\n{p.text}")
    return "\n\n".join(blocks)


def build_messages(
    system: str, history: Sequence[Turn], passages: Sequence[Passage], question: str, user_template: str
) -> list[dict[str, str]]:
    """Chat messages: system, earlier turns, then the passages and the question in the last user turn."""
    messages = [{"role": "system", "content": system}]
    for turn in history:
        messages.append({"role": "user", "content": turn.question})
        messages.append({"role": "assistant", "content": turn.answer})
    context = format_passages(passages) if passages else "(no passages)"
    messages.append({"role": "user", "content": user_template.format(passages=context, question=question)})
    return messages


def pack_prompt(
    prompter: Prompter,
    *,
    system: str,
    history: Sequence[Turn],
    passages: Sequence[Passage],
    question: str,
    user_template: str,
    n_ctx: int,
    answer_tokens: int,
) -> PackedPrompt:
    """The largest prompt that leaves ``answer_tokens`` free in ``n_ctx``; see the module docstring."""
    budget = n_ctx - answer_tokens
    if budget <= 0:
        raise PromptTooLongError(f"the answer budget ({answer_tokens} tokens) leaves no room in n_ctx={n_ctx}")
    kept_passages = list(passages)
    kept_history = list(history)

    def render() -> Prompt:
        return prompter.render(build_messages(system, kept_history, kept_passages, question, user_template))

    prompt = render()
    while prompt.size > budget and (kept_passages or kept_history):
        if kept_passages:
            kept_passages.pop()  # lowest ranked first
        else:
            kept_history.pop(0)  # then the oldest turn
        prompt = render()
    if prompt.size > budget:
        raise PromptTooLongError(
            f"the question is too long: the prompt needs {prompt.size} tokens but the context window "
            f"(llm.n_ctx={n_ctx}) leaves {budget} after the answer's {answer_tokens}; shorten the question"
        )
    return PackedPrompt(
        prompt=prompt,
        passages=kept_passages,
        dropped_passages=len(passages) - len(kept_passages),
        dropped_turns=len(history) - len(kept_history),
        history=kept_history,
    )
