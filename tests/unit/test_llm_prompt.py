"""The chat template rule and BOS handling, with a tiny character tokenizer standing in for a GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ModelFileError
from rag.llm import ChatPrompter, chat_template_for, model_wants_bos
from tests.fakes import BOS, SPECIAL, WITH_BOS, WITHOUT_BOS, CharTokenizer

MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize("template", [WITH_BOS, WITHOUT_BOS])
def test_a_model_that_wants_bos_gets_exactly_one(template):
    prompt = ChatPrompter(CharTokenizer(), template, "gguf", add_bos=True).render(MESSAGES)
    assert prompt.tokens[0] == BOS and prompt.tokens.count(BOS) == 1
    assert prompt.tokens[1] == SPECIAL["<|user|>"] and prompt.tokens[-1] == SPECIAL["<|assistant|>"]


def test_a_model_without_bos_gets_none_added():
    prompt = ChatPrompter(CharTokenizer(), WITHOUT_BOS, "gguf", add_bos=False).render(MESSAGES)
    assert BOS not in prompt.tokens


def test_special_tokens_come_from_the_template_not_from_us():
    prompt = ChatPrompter(CharTokenizer(), WITHOUT_BOS, "gguf", add_bos=False).render(MESSAGES)
    assert prompt.text == "<|user|>hi</s><|assistant|>"
    assert prompt.tokens == [3, 1000 + ord("h"), 1000 + ord("i"), 2, 4]
    assert prompt.stop == ["</s>"]


def test_text_that_looks_like_a_special_token_is_counted_as_text():
    prompter = ChatPrompter(CharTokenizer(), WITHOUT_BOS, "gguf", add_bos=False)
    assert prompter.count_tokens("</s>") == 4


def test_a_gguf_without_template_is_refused_with_the_fix():
    with pytest.raises(ModelFileError, match=r"no chat template .*'llama-2'.*chat_template_file"):
        chat_template_for({}, None, Path("/models/base.gguf"))


def test_a_template_file_replaces_a_missing_template(tmp_path):
    f = tmp_path / "tpl.jinja"
    f.write_text(WITHOUT_BOS)
    assert chat_template_for({}, f, Path("m.gguf")) == (WITHOUT_BOS, f"file {f}")
    assert chat_template_for({"tokenizer.chat_template": "x"}, None, Path("m.gguf")) == ("x", "gguf")


def test_bos_flag_is_read_from_the_gguf():
    assert model_wants_bos({}) is True
    assert model_wants_bos({"tokenizer.ggml.add_bos_token": "false"}) is False
