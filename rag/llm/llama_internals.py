"""The only place sourcier reaches inside llama-cpp-python past its public API (``Llama._ctx``).

Three things are not offered publicly by ``llama_cpp.Llama`` 0.3.x:
- the logits of the last evaluated token without sampling (the answerability check reads P(yes)/P(no));
- llama.cpp's abort callback, which stops a decode (a long prompt) in the middle, so a cancelled request
  releases the model within a fraction of a second instead of after the whole prompt;
- the number of threads of a loaded model (``llama_set_n_threads``), which follows the free cores.
``tests/integration/test_real_llm.py`` exercises all three on a real GGUF and fails with this module's message
when a new llama-cpp-python renames what they use.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rag.errors import ModelFileError

ABORTED = "llama_decode returned 2"  # llama.cpp's status for a decode stopped by the abort callback


def _context(llama: Any) -> Any:
    ctx = getattr(llama, "_ctx", None)
    if ctx is None or not hasattr(ctx, "ctx") or not hasattr(ctx, "get_logits"):
        import llama_cpp

        raise ModelFileError(
            f"llama-cpp-python {getattr(llama_cpp, '__version__', '?')} no longer has Llama._ctx.ctx / "
            f"get_logits, which sourcier uses for the answerability check and for cancelling a generation: "
            f"install the tested version (pip install 'llama-cpp-python==0.3.36')"
        )
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


def set_threads(llama: Any, threads: int, threads_batch: int) -> None:
    """The threads ``llama``'s next decodes use, for one token and for a batch (a prompt)."""
    import llama_cpp

    llama_cpp.llama_set_n_threads(_context(llama).ctx, threads, threads_batch)


def is_abort(exc: BaseException) -> bool:
    return isinstance(exc, RuntimeError) and ABORTED in str(exc)
