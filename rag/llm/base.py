"""What every chat model backend is to the rest of sourcier: the prompt types and the ``ChatModel`` interface.

A backend (the GGUF run in this process, an OpenAI-compatible server, or one a user registers with
:func:`rag.llm.register_backend`) renders messages into a :class:`Prompt` through its ``prompter``, streams
an answer for it, and scores whether passages hold the answer. Nothing here imports a backend's library.
"""

from __future__ import annotations

import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from rag.llm.turns import Cancellation, ModelActivity
from rag.settings import LLMSettings, Settings

# Held while llama.cpp loads a GGUF: it points this whole process's stderr (fd 2 and sys.stderr) at /dev/null
# for that moment, so what another thread tells the person meanwhile (the CLI's error, while the model loads
# in a thread) waits for it instead of vanishing.
STDERR_SILENCED = threading.Lock()

ZERO_WIDTH_SPACE = "\u200b"  # breaks a control-token spelling inside a document without changing how it reads


@dataclass(frozen=True)
class Prompt:
    """A rendered chat prompt: its text (for display and logs) and what the model gets.

    A local model gets exact ``tokens`` (rendered with the GGUF's own template). A server applies its own
    template: its prompt has no tokens, but the ``messages`` and an estimate of their size.
    """

    text: str
    tokens: list[int]
    stop: list[str]
    messages: list[dict[str, str]] = field(default_factory=list)
    estimated_tokens: int = 0
    # About where the documents start in ``tokens``: before it are the instructions (the system prompt), which
    # quote drafting does not copy from (rag.llm.drafts).
    documents_from: int = 0

    @property
    def size(self) -> int:
        """Tokens the prompt takes in the context window (exact for a local model, estimated for a server)."""
        return len(self.tokens) if self.tokens else self.estimated_tokens


class Prompter(Protocol):
    """Renders chat messages into a :class:`Prompt` whose size is known, and counts a text's tokens."""

    template_origin: str  # where the template comes from: "gguf", "file ...", "server"

    def render(self, messages: Sequence[dict[str, str]]) -> Prompt: ...

    def count_tokens(self, text: str) -> int: ...

    def defuse(self, text: str) -> str: ...


def decoding_kwargs(s: LLMSettings) -> dict[str, Any]:
    """Decoding settings as generation arguments (the same names for llama-cpp-python and LLM servers)."""
    return {
        "temperature": s.temperature,
        "top_k": s.top_k,
        "top_p": s.top_p,
        "min_p": s.min_p,
        "repeat_penalty": s.repeat_penalty,
        "seed": s.seed,
    }


class ChatModel(ABC):
    """A chat model as the answer path uses it, whatever runs it.

    ``activity`` says who holds the model (one generation at a time for a local model; a server schedules
    its own requests); ``last_prompt`` is what it was last given (benchmarks, debugging); ``model_path`` is
    the GGUF file for a model run in this process, None otherwise.
    """

    settings: Settings
    prompter: Prompter
    activity: ModelActivity
    last_prompt: Prompt | None = None
    model_path: Path | None = None
    # Of the last prompt evaluated, the tokens already in the model's cache (a local model; None: unknown)
    last_cached_tokens: int | None = None

    @property
    @abstractmethod
    def n_ctx(self) -> int:
        """The context window, in tokens, that prompts are packed for."""

    @abstractmethod
    def describe(self) -> str:
        """The model in words, for messages ("the model x.gguf", "the LLM server http://...")."""

    @abstractmethod
    def stream(
        self,
        prompt: Prompt,
        max_tokens: int | None = None,
        decoding: LLMSettings | None = None,
        cancel: Cancellation | None = None,
        grammar: str | None = None,
    ) -> Iterator[str]:
        """Text pieces of the answer as they come; nothing more once ``cancel`` is set. A ``grammar`` (GBNF)
        constrains the output where the backend can; the caller checks the output either way."""

    @abstractmethod
    def answerability(self, prompt: Prompt, cancel: Cancellation | None = None) -> float | None:
        """P(yes) / P(yes + no) of the first token after ``prompt`` (which asks whether the passages hold
        the answer); None when the backend cannot tell, or when cancelled."""

    def aside(self) -> ChatModel:
        """The model for short prompts beside the answers (a question's translation, a follow-up's rewriting),
        which should not evict the answer's prompt from the model's cache: a second context on the same weights
        for a local GGUF; the model itself where the backend keeps no such cache."""
        return self

    def process_state(self) -> dict[str, Any] | None:
        """The process the model runs in, for health checks (pid, state, restarts, last crash); None when it
        runs in this process or elsewhere."""
        return None

    def close(self) -> None:  # noqa: B027 (most backends hold nothing to free)
        """Frees what the model holds (its worker process, its connections); it may not be used after."""

    def sampling_kwargs(self, decoding: LLMSettings | None = None) -> dict[str, Any]:
        """The decoding settings (the model's own, or a session's), as generation arguments."""
        return decoding_kwargs(decoding or self.settings.llm)
