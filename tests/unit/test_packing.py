"""Context packing is token-exact: it never overflows n_ctx and drops the lowest-ranked passages first."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from rag.answering.packing import Passage, PromptTooLongError, Turn, build_messages, format_passages, pack_prompt
from rag.llm import ChatPrompter
from tests.fakes import WITHOUT_BOS, CharTokenizer

USER = "Passages:\n{passages}\n\nQuestion: {question}"
PROMPTER = ChatPrompter(CharTokenizer(), WITHOUT_BOS, "gguf", add_bos=True)


def passages(n: int, size: int = 60) -> list[Passage]:
    return [
        Passage(f"id{i}", f"passage {i} " + "x" * size, f"doc{i}.pdf", i + 1, 0, size, 1.0 - i / 10) for i in range(n)
    ]


def pack(n_ctx: int, ps=None, history=(), question="What is x?", answer_tokens=50):
    return pack_prompt(
        PROMPTER,
        system="Answer from the passages.",
        history=list(history),
        passages=ps if ps is not None else passages(6),
        question=question,
        user_template=USER,
        n_ctx=n_ctx,
        answer_tokens=answer_tokens,
    )


def test_everything_fits_in_a_large_window():
    packed = pack(10_000)
    assert len(packed.passages) == 6 and packed.dropped_passages == 0
    assert "[6] (doc5.pdf, page 6)" in packed.prompt.text


def test_a_small_window_drops_the_lowest_ranked_passages_first():
    full = pack(10_000).prompt_tokens
    packed = pack(full + 50 - 100)  # 100 tokens short: about two passages must go
    assert [p.chunk_id for p in packed.passages] == [f"id{i}" for i in range(len(packed.passages))]
    assert 0 < packed.dropped_passages < 6
    assert packed.prompt_tokens + 50 <= full + 50 - 100


def test_history_goes_after_the_passages_oldest_first():
    history = [Turn(f"question {i} " + "q" * 40, f"answer {i} " + "a" * 40) for i in range(3)]
    no_passages = pack(10_000, ps=[], history=history).prompt_tokens
    packed = pack(no_passages + 50 - 60, history=history)
    assert packed.passages == [] and packed.dropped_turns >= 1
    assert packed.history == history[packed.dropped_turns :]  # the most recent turns are kept


def test_a_question_too_long_for_the_window_is_refused():
    with pytest.raises(PromptTooLongError, match="the question is too long"):
        pack(300, question="why? " * 200)


@hsettings(max_examples=60, deadline=None)
@given(n_ctx=st.integers(min_value=60, max_value=1400), answer=st.integers(min_value=1, max_value=200))
def test_the_prompt_never_overflows_the_window(n_ctx, answer):
    history = [Turn("earlier question", "earlier answer")]
    try:
        packed = pack(n_ctx, history=history, answer_tokens=answer)
    except PromptTooLongError:
        return
    assert packed.prompt_tokens + answer <= n_ctx
    # the count is exact: the tokens are those of the rendered text
    assert (
        packed.prompt.tokens
        == PROMPTER.render(
            build_messages("Answer from the passages.", packed.history, packed.passages, "What is x?", USER)
        ).tokens
    )


def test_passages_are_numbered_with_file_and_page():
    text = format_passages([Passage("a", "alpha", "x.md", 0, 0, 5, 0.9), Passage("b", "beta", "y.pdf", 3, 0, 4, 0.8)])
    assert text == "[1] (x.md)\nalpha\n\n[2] (y.pdf, page 3)\nbeta"
