"""The chat template rule and BOS handling, with a tiny character tokenizer standing in for a GGUF."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.errors import ModelFileError
from rag.llm import ChatPrompter, chat_template_for, model_wants_bos

SPECIAL = {"<s>": 1, "</s>": 2, "<|user|>": 3, "<|assistant|>": 4}
BOS, EOS = 1, 2

# A Llama-style template that writes bos_token itself, and one that does not.
WITH_BOS = (
    "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}<|assistant|>"
)
WITHOUT_BOS = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}<|assistant|>"


class CharTokenizer:
    """Special tokens are whole; every other character is one token."""

    def __init__(self, metadata: dict[str, str] | None = None) -> None:
        self.metadata = metadata or {}

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        s, out = text.decode(), [BOS] if add_bos else []
        i = 0
        while i < len(s):
            hit = next((t for t in SPECIAL if special and s.startswith(t, i)), None)
            if hit:
                out.append(SPECIAL[hit])
                i += len(hit)
            else:
                out.append(1000 + ord(s[i]))
                i += 1
        return out

    def detokenize(self, tokens, prev_tokens=None, special=False) -> bytes:
        names = {v: k for k, v in SPECIAL.items()}
        text = (chr(t - 1000) if t >= 1000 else names[t] if special else "" for t in tokens)
        return "".join(text).encode()

    def token_bos(self) -> int:
        return BOS

    def token_eos(self) -> int:
        return EOS


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
