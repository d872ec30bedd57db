"""The local GGUF model: loaded from the settings, prompted through its own chat template, streamed.

Prompts are rendered with the GGUF's ``tokenizer.chat_template`` by llama-cpp-python's Jinja2 chat
formatter and turned into tokens here, so that packing can count them exactly and generation gets
exactly those tokens. No special token is ever written by hand. A GGUF without a template is refused
(llama-cpp-python would silently fall back to the "llama-2" format) unless the settings name a
template file. BOS: the rendered text already holds it when the template writes ``bos_token``; it is
added only when the model asks for one and the text lacks it, so a prompt never starts with two.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

from rag.errors import ModelFileError, SourcierError
from rag.llm.base import STDERR_SILENCED, ZERO_WIDTH_SPACE, ChatModel, Prompt
from rag.llm.drafts import QuoteDrafts
from rag.llm.gbnf import check_grammar
from rag.llm.llama_internals import (
    LazyGrammar,
    drafting,
    install_abort_check,
    is_abort,
    last_logits,
    set_threads,
    sibling,
)
from rag.llm.turns import Cancellation, ModelActivity, cancelled
from rag.machine import CoreWatch
from rag.settings import LLMSettings, Settings

TEMPLATE_KEY = "tokenizer.chat_template"
log = logging.getLogger(__name__)


class Tokenizing(Protocol):
    """What prompt rendering needs from a llama_cpp.Llama (tests pass a small fake)."""

    metadata: dict[str, str]

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]: ...

    def detokenize(self, tokens: list[int], prev_tokens: list[int] | None = None, special: bool = False) -> bytes: ...

    def token_bos(self) -> int: ...

    def token_eos(self) -> int: ...


class ChatPrompter:
    """Renders chat messages with the model's own template into exact tokens."""

    def __init__(self, llama: Tokenizing, template: str, template_origin: str, add_bos: bool) -> None:
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._llama = llama
        self.template_origin = template_origin
        self.bos_id = llama.token_bos()
        self.eos_id = llama.token_eos()
        self.add_bos = add_bos and self.bos_id >= 0
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self._token_text(self.eos_id),
            bos_token=self._token_text(self.bos_id),
            add_generation_prompt=True,
        )

    def _token_text(self, token: int) -> str:
        if token < 0:
            return ""
        return self._llama.detokenize([token], special=True).decode("utf-8", errors="ignore")

    def render(self, messages: Sequence[dict[str, str]]) -> Prompt:
        """The prompt for ``messages`` (role/content dicts), ending where the assistant's answer starts.

        Contents are data: a control token written inside one (a document containing
        ``<|im_start|>system``) is defused, so only the template itself opens and closes turns.
        """
        messages = [{**m, "content": self.defuse(m["content"])} for m in messages]
        result = self._formatter(messages=messages)
        tokens = self._llama.tokenize(result.prompt.encode("utf-8"), add_bos=False, special=True)
        if self.add_bos and (not tokens or tokens[0] != self.bos_id):
            tokens = [self.bos_id, *tokens]
        stop = [s for s in (result.stop if isinstance(result.stop, list) else [result.stop]) if s]
        system = sum(self.count_tokens(m["content"]) for m in messages[:1] if m.get("role") == "system")
        return Prompt(text=result.prompt, tokens=tokens, stop=stop, messages=messages, documents_from=system)

    def defuse(self, text: str) -> str:
        """``text`` with every control-token spelling broken by a zero-width space (shown the same)."""
        if not text:
            return text
        plain = set(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))
        for token in set(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=True)) - plain:
            spelled = self._token_text(token)
            if len(spelled) > 1 and spelled in text:
                text = text.replace(spelled, spelled[0] + ZERO_WIDTH_SPACE + spelled[1:])
        return text

    def count_tokens(self, text: str) -> int:
        """Tokens ``text`` costs inside a prompt (special tokens in it are not counted as text)."""
        return len(self._llama.tokenize(text.encode("utf-8"), add_bos=False, special=False))


def compile_grammar(grammar: str) -> Any:
    """A GBNF grammar ready for llama-cpp-python's sampler, checked first (:func:`rag.llm.gbnf.check_grammar`):
    llama.cpp crashes the process on a grammar it cannot parse, a bad one here is a ``GrammarError``."""
    from llama_cpp import LlamaGrammar

    check_grammar(grammar)
    try:
        return LlamaGrammar.from_string(grammar, verbose=False)
    except ValueError as exc:
        raise SourcierError(f"the answer's grammar could not be parsed by llama.cpp: {exc}") from None


def chat_template_for(metadata: dict[str, str], template_file: Path | None, model_path: Path) -> tuple[str, str]:
    """The template to use and where it came from; refuses a GGUF without one unless a file is set."""
    if template_file is not None:
        try:
            return Path(template_file).read_text(encoding="utf-8"), f"file {template_file}"
        except OSError as exc:
            raise ModelFileError(f"chat template file unreadable: {template_file}: {exc.strerror or exc}") from None
    template = metadata.get(TEMPLATE_KEY)
    if not template:
        raise ModelFileError(
            f"the model {model_path.name} has no chat template ({TEMPLATE_KEY} is missing from the GGUF); "
            f"llama-cpp-python would silently use the 'llama-2' format. Use a GGUF that carries its template, "
            f"or set llm.chat_template_file (SOURCIER_LLM__CHAT_TEMPLATE_FILE) to the model's Jinja2 template"
        )
    return template, "gguf"


def model_wants_bos(metadata: dict[str, str]) -> bool:
    """Whether the tokenizer adds BOS to a sequence (GGUF ``tokenizer.ggml.add_bos_token``; default yes)."""
    return str(metadata.get("tokenizer.ggml.add_bos_token", "true")).lower() == "true"


class LocalLLM(ChatModel):
    """A loaded GGUF model with its chat prompter and the decoding settings.

    The model has one context, shared by every page session and API request: ``activity`` lets one
    generation at a time use it, and each one gives it back when it ends in any way (finished, closed
    early, cancelled, an error). A cancelled generation stops between two tokens, or inside a long
    prompt's evaluation through llama.cpp's abort callback.
    """

    def __init__(
        self, llama: Any, prompter: ChatPrompter, settings: Settings, model_path: Path, owner: LocalLLM | None = None
    ) -> None:
        self.llama = llama
        self.prompter = prompter
        self.settings = settings
        self.model_path = model_path
        self.last_prompt: Prompt | None = None  # what the model was last given (benchmarks, debugging)
        self.last_drafts: QuoteDrafts | None = None  # the last quote's drafts: how many were proposed
        # ``owner``: the model whose context this one sits beside (see ``aside``), sharing its turns and cores
        self.owner = owner
        self.activity = owner.activity if owner else ModelActivity(exclusive=True)
        self._running: Cancellation | None = None  # the cancellation of the generation holding the model
        install_abort_check(llama, lambda: cancelled(self._running))
        if owner is not None:
            self.cores = owner.cores
        else:
            self.cores = CoreWatch() if settings.llm.adapt_threads else None
            if self.cores is not None and not self.cores.start():
                self.cores = None
        self.threads = (settings.llm.n_threads, settings.llm.n_threads_batch)  # what llama.cpp uses now
        self._aside: LocalLLM | None = None
        self._aside_guard = threading.Lock()

    def aside(self) -> LocalLLM:
        """This model with a second, small context (``llm.aside_n_ctx`` tokens, made on first use: 0.02 s and
        30 MB for the default model, the weights shared): a question's translation between two answers keeps
        its own instructions cached and leaves the answer's system prompt in the main context. A prompt too
        long for it runs in the main context. The model itself when the setting is 0, or where
        llama-cpp-python cannot make a second context."""
        if self.owner is not None:
            return self
        with self._aside_guard:
            if self._aside is None:
                n_ctx = min(self.settings.llm.aside_n_ctx, self.n_ctx)
                if n_ctx <= 0:
                    self._aside = self
                    return self
                try:
                    llama = sibling(self.llama, **context_params(self.settings, n_ctx))
                except (ModelFileError, ValueError, RuntimeError) as exc:
                    log.warning("short prompts share the answers' context: %s", exc)
                    self._aside = self
                else:
                    self._aside = LocalLLM(llama, self.prompter, self.settings, self.model_path, owner=self)
            return self._aside

    RECHECK_TOKENS = 8  # how often a running answer looks at the free cores again

    def fit_threads(self) -> tuple[int, int]:
        """The threads llama.cpp uses from now: the configured ones, fewer while other processes keep cores
        busy (see ``rag.machine``)."""
        if self.cores is not None:
            s = self.settings.llm
            fitted = (self.cores.threads(s.n_threads), self.cores.threads(s.n_threads_batch))
            if fitted != self.threads:
                set_threads(self.llama, *fitted)
                self.threads = fitted
        return self.threads

    @property
    def n_ctx(self) -> int:
        return int(self.llama.n_ctx())

    def describe(self) -> str:
        return f"the model {self.model_path.name}"

    def stream(
        self,
        prompt: Prompt,
        max_tokens: int | None = None,
        decoding: LLMSettings | None = None,
        cancel: Cancellation | None = None,
        grammar: str | None = None,
    ) -> Iterator[str]:
        """Text pieces of the answer as the model produces them; nothing more once ``cancel`` is set. With a
        ``grammar`` (GBNF), only output it allows can be sampled.

        Others wait for the model until this answer is finished, closed or cancelled.
        """
        s = decoding or self.settings.llm
        if self.owner is not None and len(prompt.tokens) + (max_tokens or s.max_tokens) > self.n_ctx:
            yield from self.owner.stream(prompt, max_tokens, decoding, cancel, grammar)
            return
        constraint = compile_grammar(grammar) if grammar else None
        with self.activity.hold(cancel) as hold, self._running_as(cancel), self._drafts(prompt, s, grammar):
            if hold is None:
                return
            self.last_prompt = prompt
            self.fit_threads()
            inputs = self.llama.input_ids[: self.llama.n_tokens]
            self.last_cached_tokens = self.llama.longest_token_prefix(inputs, prompt.tokens)
            lazy = LazyGrammar(self.llama, constraint) if constraint and s.lazy_grammar and s.temperature == 0 else None
            chunks = self.llama.create_completion(
                prompt=prompt.tokens,
                max_tokens=max_tokens or s.max_tokens,
                stop=prompt.stop,
                stream=True,
                grammar=constraint if lazy is None else None,
                logits_processor=[lazy] if lazy is not None else None,
                **self.sampling_kwargs(s),
            )
            try:
                for n, chunk in enumerate(chunks, 1):
                    hold.progress()
                    if cancelled(cancel):
                        return
                    if n % self.RECHECK_TOKENS == 0:
                        self.fit_threads()
                    text = chunk["choices"][0]["text"]
                    if text:
                        yield text
            except RuntimeError as exc:
                if cancelled(cancel) and is_abort(exc):
                    return
                raise
            finally:
                chunks.close()
                if lazy is not None:
                    lazy.close()

    def answerability(self, prompt: Prompt, cancel: Cancellation | None = None) -> float | None:
        """P(yes) / P(yes + no) for the first token the model would write after ``prompt``, which asks
        whether the passages hold the answer. One forward pass over the prompt's new tokens (the passages
        stay in the model's cache for the answer that follows), nothing sampled. None when cancelled."""
        import numpy as np

        with self.activity.hold(cancel) as hold, self._running_as(cancel):
            if hold is None:
                return None
            tokens = prompt.tokens
            cached = self.llama.longest_token_prefix(self.llama.input_ids[: self.llama.n_tokens], tokens)
            self.llama.n_tokens = min(cached, len(tokens) - 1)  # evaluate at least the last token
            self.last_cached_tokens = self.llama.n_tokens
            self.fit_threads()
            try:
                self.llama.eval(tokens[self.llama.n_tokens :])
            except RuntimeError as exc:
                if cancelled(cancel) and is_abort(exc):
                    return None
                raise
            hold.progress()
            logits = last_logits(self.llama)
            probs = np.exp(logits - logits.max())
            yes = float(sum(probs[t] for t in self._answer_tokens(("yes", "Yes", " yes", " Yes", "YES"))))
            no = float(sum(probs[t] for t in self._answer_tokens(("no", "No", " no", " No", "NO"))))
        return yes / (yes + no) if yes + no > 0 else 0.5

    @contextmanager
    def _drafts(self, prompt: Prompt, s: LLMSettings, grammar: str | None) -> Iterator[None]:
        """Quote drafting (``llm.draft_tokens``) for a quoted answer's generation; nothing for other ones."""
        if not grammar or not s.draft_tokens:
            yield
            return

        def make_drafts(keep_all_logits: Callable[[], None]) -> QuoteDrafts:
            return QuoteDrafts(
                len(prompt.tokens),
                lambda tokens: self.llama.detokenize(tokens).decode("utf-8", errors="ignore"),
                keep_all_logits,
                tokens=s.draft_tokens,
                skip=prompt.documents_from,
            )

        with drafting(self.llama, make_drafts) as drafts:
            self.last_drafts = drafts
            yield

    @contextmanager
    def _running_as(self, cancel: Cancellation | None) -> Iterator[None]:
        """While the model is held: the abort callback watches this generation's cancellation."""
        self._running = cancel
        try:
            yield
        finally:
            self._running = None

    def _answer_tokens(self, words: Sequence[str]) -> set[int]:
        return {self.llama.tokenize(w.encode("utf-8"), add_bos=False, special=False)[0] for w in words}


def load_local(settings: Settings, model_path: Path | None = None) -> LocalLLM:
    """The GGUF (``model_path``, else the configured or packaged one) loaded in this process, with its own
    chat template. Imports llama_cpp; heavy: call once and share."""
    from rag.models.gguf import resolve_model_path

    path = model_path or resolve_model_path(settings)
    llama = open_gguf(path, settings)
    return LocalLLM(llama, prompter_for(llama, settings, path), settings, path)


def open_gguf(path: Path, settings: Settings, vocab_only: bool = False) -> Any:
    """A ``llama_cpp.Llama`` over ``path`` with the configured threads and context; with ``vocab_only`` just
    its vocabulary and metadata (tokenizing and templates: a fraction of a second, no weights)."""
    try:
        from llama_cpp import Llama
    except ImportError:
        raise ModelFileError("llama-cpp-python is not installed: pip install -e '.[llm]' (or bash setup.sh)") from None
    try:  # llama-cpp-python (verbose=False) silences stderr while it loads, and so do we for a vocabulary
        with STDERR_SILENCED, _stderr_silenced() if vocab_only else contextlib.nullcontext():
            if vocab_only:  # a vocabulary has no cache to size
                return Llama(model_path=str(path), vocab_only=True, n_ctx=64, verbose=False)
            return Llama(model_path=str(path), verbose=False, **context_params(settings, settings.llm.n_ctx))
    except (ValueError, RuntimeError) as exc:
        raise ModelFileError(f"cannot load the model {path}: {exc}") from None


def context_params(settings: Settings, n_ctx: int) -> dict[str, Any]:
    """``Llama``'s arguments for a context of ``n_ctx`` tokens run as the settings say."""
    s = settings.llm
    return {
        "n_ctx": n_ctx,
        "n_batch": min(512, n_ctx),
        "n_threads": s.n_threads,
        "n_threads_batch": s.n_threads_batch,
        "n_gpu_layers": s.n_gpu_layers,
        "flash_attn": s.flash_attn,
        "seed": s.seed,
        "lora_path": str(s.lora_path) if s.lora_path else None,
    }


@contextmanager
def _stderr_silenced() -> Iterator[None]:
    """llama.cpp's own warnings off for a moment (a vocabulary's context "overflows" its training size of 0)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 2)
        with contextlib.redirect_stderr(io.StringIO()):  # llama-cpp-python's log callback writes to sys.stderr
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def prompter_for(llama: Tokenizing, settings: Settings, model_path: Path) -> ChatPrompter:
    """The prompter of a loaded GGUF (or of its vocabulary alone): its own template, or the configured file."""
    template, origin = chat_template_for(llama.metadata, settings.llm.chat_template_file, model_path)
    return ChatPrompter(llama, template, origin, add_bos=model_wants_bos(llama.metadata))
