"""Quote drafts (rag.llm.drafts) and the drafting switch on a llama-cpp-python model (rag.llm.llama_internals)."""

from __future__ import annotations

import numpy as np
import pytest

from rag.llm.drafts import QuoteDrafts, lookup
from rag.llm.llama_internals import drafting

# "system" 1 2 3 | passages 10 11 12 13 14 15 | 20 11 12 30 | question 40 | output ...
PROMPT = [1, 2, 3, 10, 11, 12, 13, 14, 15, 20, 11, 12, 30, 40]


def ids(*output: int) -> np.ndarray:
    return np.array(PROMPT + list(output), dtype=np.intc)


def test_the_longest_run_that_ends_the_output_gives_what_followed_it_in_the_prompt():
    # 10 11 12 occurs once (then 13 14 15...); 11 12 alone occurs twice and would be ambiguous
    assert lookup(ids(10, 11, 12), 0, len(PROMPT), 8, 2, 3).tolist() == [13, 14, 15]
    assert lookup(ids(20, 11, 12), 0, len(PROMPT), 8, 2, 3).tolist() == [30, 40]


def test_a_shorter_run_is_tried_when_the_longer_one_is_not_in_the_prompt_and_the_earliest_wins():
    assert lookup(ids(99, 11, 12), 0, len(PROMPT), 8, 2, 2).tolist() == [13, 14]


def test_nothing_is_drafted_below_the_shortest_run_or_past_the_prompt():
    assert lookup(ids(99, 12), 0, len(PROMPT), 8, 3, 4).size == 0  # a two-token run is below min 3
    assert lookup(ids(5, 6), 0, len(PROMPT), 8, 2, 4).size == 0  # not in the prompt
    assert lookup(ids(30, 40), 0, len(PROMPT), 8, 2, 4).size == 0  # the prompt's last tokens: nothing follows
    assert lookup(ids(13, 14), 0, len(PROMPT), 8, 2, 8).tolist() == [15, 20, 11, 12, 30, 40]  # stops at its end


def test_the_instructions_before_the_documents_are_not_copied_from():
    prompt = [7, 8, 9, 50, 7, 8, 60, 61]
    tokens = np.array([*prompt, 7, 8], dtype=np.intc)
    assert lookup(tokens, 0, len(prompt), 8, 2, 2).tolist() == [9, 50]
    assert lookup(tokens, 3, len(prompt), 8, 2, 2).tolist() == [60, 61]


class Text:
    """Detokenizes with a table; anything else is a letter."""

    TABLE = {90: '"\n', 91: "Answer:"}

    def __call__(self, tokens: list[int]) -> str:
        return "".join(self.TABLE.get(t, "x") for t in tokens)


def test_drafts_stop_for_good_once_the_quote_is_closed():
    calls = []
    drafts = QuoteDrafts(len(PROMPT), Text(), lambda: calls.append(1), tokens=3)
    assert drafts(ids(10, 11)).tolist() == [12, 13, 14]
    assert calls == [1] and drafts.drafted == 3
    assert drafts(ids(10, 11, 12, 90)).size == 0  # the quote's end was written
    assert drafts(ids(10, 11, 12, 90, 91, 10, 11)).size == 0  # copying again after it: not drafted
    assert calls == [1] and drafts.drafted == 3


def test_no_draft_means_the_model_keeps_its_usual_single_logits():
    calls = []
    drafts = QuoteDrafts(len(PROMPT), Text(), lambda: calls.append(1))
    assert drafts(ids(5, 6)).size == 0
    assert calls == [] and drafts.calls == 1


class FakeLlama:
    """The attributes of llama_cpp.Llama that drafting uses."""

    def __init__(self) -> None:
        self._n_ctx, self._n_vocab = 64, 10
        self.scores = np.zeros((8, 10), dtype=np.single)  # n_batch rows: what Llama allocates without logits_all
        self._logits_all = False
        self.draft_model = None


def test_drafting_sets_the_drafts_for_the_call_only_and_keeps_all_logits_only_once_asked():
    llama = FakeLlama()
    made = []
    with drafting(llama, lambda keep_all_logits: made.append(keep_all_logits) or "drafts") as drafts:
        assert drafts == "drafts" and llama.draft_model == "drafts" and llama._logits_all is False
        made[0]()
        assert llama._logits_all is True
        # llama-cpp-python copies kept rows into scores at the token's position: any row of the context fits
        llama.scores[40:44, :].reshape(-1)[::] = np.ones(40, dtype=np.single)
    assert llama.draft_model is None and llama._logits_all is False
    assert llama.scores.shape == (64, 10) and llama.scores.nbytes == 64 * 10 * 4
    assert llama.scores.base is not None and llama.scores.strides[0] == 0  # one row of memory behind them


def test_drafting_is_refused_clearly_when_llama_cpp_python_no_longer_has_what_it_uses():
    from rag.errors import ModelFileError

    llama = FakeLlama()
    del llama.draft_model
    with pytest.raises(ModelFileError, match="draft_tokens = 0"), drafting(llama, lambda _: object()):
        pass
