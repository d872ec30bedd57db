"""The only place sourcier reaches inside llama-cpp-python past its public API (``Llama._ctx``).

Six things are not offered publicly by ``llama_cpp.Llama`` 0.3.x:
- the logits of the last evaluated token without sampling (the answerability check reads P(yes)/P(no));
- llama.cpp's abort callback, which stops a decode (a long prompt) in the middle, so a cancelled request
  releases the model within a fraction of a second instead of after the whole prompt;
- the number of threads of a loaded model (``llama_set_n_threads``), which follows the free cores;
- drafts for one generation only (``Llama.draft_model``, set per call), with the logits of every position
  kept only while drafts are checked (``Llama._logits_all``): the library's own way turns that on for every
  prompt token of every call and copies them into an array of the context's size times the vocabulary's
  (2.5 GB for the default model), which sampling never reads;
- a grammar checked lazily under greedy decoding (:class:`LazyGrammar`, llama.cpp's own grammar sampler driven
  from a logits processor), as llama.cpp's own programs do: the library's sampler checks all 151,936 tokens of
  the vocabulary against the grammar at every step, a quarter of a quoted answer's decoding time.
- a second context (its own KV cache) on weights already loaded (:func:`sibling`): ``Llama`` always loads its
  own copy (another 1.8 GB and 10 s for the default model; 20 MB and 0.02 s this way).
``tests/integration/test_real_llm.py`` exercises them on a real GGUF and fails with this module's message
when a new llama-cpp-python renames what they use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rag.errors import ModelFileError

ABORTED = "llama_decode returned 2"  # llama.cpp's status for a decode stopped by the abort callback


def _moved(what: str, used_for: str) -> ModelFileError:
    """The error for an installed llama-cpp-python that no longer has ``what``."""
    import llama_cpp

    return ModelFileError(
        f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')} no longer has {what}, which sourcier uses "
        f"{used_for}: install the tested version (pip install 'llama-cpp-python==0.3.36')"
    )


def _context(llama: Any) -> Any:
    ctx = getattr(llama, "_ctx", None)
    if ctx is None or not hasattr(ctx, "ctx") or not hasattr(ctx, "get_logits"):
        raise _moved("Llama._ctx.ctx / get_logits", "for the answerability check and for cancelling a generation")
    return ctx


def last_logits(llama: Any) -> Any:
    """The logits after the last evaluated token, as a numpy array of the vocabulary's size."""
    import numpy as np

    return np.ctypeslib.as_array(_context(llama).get_logits(), shape=(llama.n_vocab(),))


def install_abort_check(llama: Any, should_abort: Callable[[], bool]) -> None:
    """Make every decode of ``llama`` stop as soon as ``should_abort()`` is true (llama.cpp checks between
    the steps of a forward pass). An aborted decode raises ``RuntimeError(ABORTED)`` and keeps the cache
    consistent: llama-cpp-python evaluates again from the last complete batch."""
    import llama_cpp

    callback = llama_cpp.ggml_abort_callback(lambda _data: bool(should_abort()))
    llama_cpp.llama_set_abort_callback(_context(llama).ctx, callback, None)
    llama._sourcier_abort_callback = callback  # the C side holds a bare pointer: keep the Python object alive


_BORROWING = threading.Lock()  # sibling() swaps a module global for a moment


class _Borrowed:
    """The loaded weights of another ``Llama``, lent to a second one: everything is theirs, but closing the
    borrower leaves them loaded (their owner frees them)."""

    def __init__(self, model: Any) -> None:
        self._model = model

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def close(self) -> None:
        pass


def sibling(llama: Any, **params: Any) -> Any:
    """A second ``llama_cpp.Llama`` on the weights ``llama`` has loaded, with a context (a KV cache) of its own
    made with ``params`` (``Llama``'s arguments: n_ctx, threads...): what one context keeps cached, the other
    does not evict. It must be dropped before ``llama`` is closed."""
    import llama_cpp.llama as module

    model = getattr(llama, "_model", None)
    if model is None or not hasattr(module, "internals") or not hasattr(module.internals, "LlamaModel"):
        raise _moved("Llama._model / llama_cpp.llama.internals.LlamaModel", "for a second context on one model")
    with _BORROWING:
        own = module.internals.LlamaModel
        module.internals.LlamaModel = lambda **_loading: _Borrowed(model)
        try:
            return module.Llama(model_path=llama.model_path, verbose=False, **params)
        finally:
            module.internals.LlamaModel = own


def set_threads(llama: Any, threads: int, threads_batch: int) -> None:
    """The threads ``llama``'s next decodes use, for one token and for a batch (a prompt)."""
    import llama_cpp

    llama_cpp.llama_set_n_threads(_context(llama).ctx, threads, threads_batch)


def is_abort(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and ABORTED in str(exc)


@contextmanager
def drafting(llama: Any, make_drafts: Callable[[Callable[[], None]], Any]) -> Iterator[Any]:
    """While open, ``llama``'s generations are speculative with the drafts ``make_drafts(keep_all_logits)``
    returns (called with every token so far, they return the guessed next ones), which it yields. The drafts
    must call ``keep_all_logits()`` before returning any: the next batch then keeps the logits of every
    position, which the check of each drafted token reads. The prompt itself is evaluated without them (a
    fifth of its cost saved); everything is back to normal on exit."""
    import numpy as np

    for name in ("draft_model", "_logits_all", "scores", "_n_ctx", "_n_vocab"):
        if not hasattr(llama, name):
            raise _moved(f"Llama.{name}", "to draft the quote (or set llm.draft_tokens = 0)")
    if not getattr(llama, "_sourcier_scores_sink", False):
        # llama-cpp-python copies each kept row of logits into ``scores``, which nothing here reads: rows of
        # one shared sink (a view with a zero stride) take the copies without 2.5 GB behind them.
        sink = np.zeros(llama._n_vocab, dtype=np.single)
        llama.scores = np.lib.stride_tricks.as_strided(sink, shape=(llama._n_ctx, llama._n_vocab), strides=(0, 4))
        llama._sourcier_scores_sink = True

    def keep_all_logits() -> None:
        llama._logits_all = True

    drafts = make_drafts(keep_all_logits)
    llama.draft_model, llama._logits_all = drafts, False
    try:
        yield drafts
    finally:
        llama.draft_model, llama._logits_all = None, False


class LazyGrammar:
    """Greedy decoding under a GBNF grammar, the grammar checked on the likeliest token first.

    Greedy decoding under a grammar writes the likeliest token the grammar allows. When the likeliest of all is
    allowed (almost always, once the model follows the grammar's shape), only that one token needs checking;
    otherwise the whole vocabulary is checked, as before. The choice is identical either way. Used as
    llama-cpp-python's logits processor (the first step of its sampler chain, one call per sampled token): it
    leaves the chosen token alone in the running and advances the grammar by it.
    """

    def __init__(self, llama: Any, grammar: Any) -> None:
        import llama_cpp
        from llama_cpp._internals import LlamaTokenDataArray

        model = getattr(llama, "_model", None)
        if model is None or not hasattr(model, "vocab") or not hasattr(grammar, "_grammar"):
            raise _moved("Llama._model.vocab or LlamaGrammar._grammar", "to check the quote's grammar")
        self._c = llama_cpp
        self._sampler = llama_cpp.llama_sampler_init_grammar(
            model.vocab, grammar._grammar.encode("utf-8"), grammar._root.encode("utf-8")
        )
        if not self._sampler:
            raise ModelFileError("llama.cpp could not build the answer's grammar")
        self._one = (llama_cpp.llama_token_data * 1)()
        self._one_array = llama_cpp.llama_token_data_array(data=self._one, size=1, selected=-1, sorted=False)
        self._all = LlamaTokenDataArray(n_vocab=llama.n_vocab())
        self.full_checks = 0  # steps where the likeliest token was refused and the whole vocabulary was checked
        self.steps = 0

    def _allows(self, token: int, logit: float) -> bool:
        import math

        self._one[0].id, self._one[0].logit, self._one[0].p = token, logit, 0.0
        self._one_array.size, self._one_array.selected, self._one_array.sorted = 1, -1, False
        self._c.llama_sampler_apply(self._sampler, self._c.byref(self._one_array))
        return math.isfinite(self._one[0].logit)

    def __call__(self, _input_ids: Any, logits: Any) -> Any:
        import numpy as np

        self.steps += 1
        best = int(np.argmax(logits))
        if not self._allows(best, float(logits[best])):
            self.full_checks += 1
            self._all.copy_logits(logits)
            self._c.llama_sampler_apply(self._sampler, self._c.byref(self._all.candidates))
            best = int(np.argmax(self._all.candidates_data.logit))
            if not np.isfinite(self._all.candidates_data.logit[best]):
                # a dead end (the library's sampler would then hand llama.cpp a token its grammar refuses, which
                # aborts the process): left unconstrained, the output fails the quote's own checks instead
                return logits
        self._c.llama_sampler_accept(self._sampler, best)
        chosen = np.full_like(logits, -np.inf)
        chosen[best] = logits[best]
        return chosen

    def close(self) -> None:
        if self._sampler:
            self._c.llama_sampler_free(self._sampler)
            self._sampler = None
