"""Prompt-lookup drafts for the quote: the next tokens guessed from where the text just written occurs in the
prompt, checked by the model in one batch (speculative decoding without a second model).

The quoted answer style copies a passage's sentence word for word, so once a quote has started, the tokens
that follow its last few in the prompt are what the model will write. llama-cpp-python evaluates the drafted
tokens together with the sampled one and keeps them while the model's own choice at each position agrees;
the first disagreement drops the rest. Every token still comes from the model's own distribution (and the
grammar), so a wrong draft costs time, never a word.

Only the quote is drafted: the short answer after it is the model's own words, where drafts are mostly
wrong and a rejected batch costs three single steps (docs/measurements.md, "Drafting the quote").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

# The quoted style's quote is closed: "[n] \"...\"\nAnswer: ..." (rag.answering.quotes.answer_grammar).
QUOTE_END = '"\n'


def lookup(tokens: np.ndarray, search_from: int, search_to: int, max_ngram: int, min_ngram: int, n: int) -> np.ndarray:
    """Up to ``n`` tokens that followed, in ``tokens[search_from:search_to]``, the longest run (``max_ngram``
    down to ``min_ngram`` tokens) that also ends ``tokens``; its earliest occurrence wins. Empty when none."""
    end = len(tokens)
    for size in range(min(max_ngram, end - 1), min_ngram - 1, -1):
        tail = tokens[end - size :]
        hay = tokens[search_from:search_to]
        if len(hay) <= size:
            continue
        windows = np.lib.stride_tricks.sliding_window_view(hay, size)
        for hit in np.flatnonzero(np.all(windows == tail, axis=1)):
            start = search_from + int(hit) + size
            stop = min(start + n, search_to)
            if start < stop:
                return tokens[start:stop]
    return tokens[:0]


class QuoteDrafts:
    """Drafts for one generation: looked up in the prompt (after its first ``skip`` tokens, the system
    prompt, whose example quote would mislead), until the text written since the prompt has closed the quote.

    Called by llama-cpp-python with every token so far (prompt and output); ``on_draft`` runs before the
    drafts are returned (the model must then keep the logits of every position of its next batch).
    """

    def __init__(
        self,
        prompt_tokens: int,
        detokenize: Callable[[list[int]], str],
        on_draft: Callable[[], None],
        tokens: int = 8,
        skip: int = 0,
        max_ngram: int = 8,
        min_ngram: int = 2,
    ) -> None:
        self.prompt_tokens = prompt_tokens
        self.detokenize = detokenize
        self.on_draft = on_draft
        self.tokens, self.skip, self.max_ngram, self.min_ngram = tokens, skip, max_ngram, min_ngram
        self.drafted = 0  # tokens proposed, for the timings
        self.calls = 0
        self._closed = False

    def __call__(self, input_ids: Any, /, **_: Any) -> np.ndarray:
        ids = np.asarray(input_ids)
        if self._closed or QUOTE_END in self.detokenize(ids[self.prompt_tokens :].tolist()):
            self._closed = True
            return np.array([], dtype=np.intc)
        drafts = lookup(ids, self.skip, self.prompt_tokens, self.max_ngram, self.min_ngram, self.tokens)
        self.calls += 1
        if len(drafts):
            self.drafted += len(drafts)
            self.on_draft()
        return drafts.astype(np.intc)
