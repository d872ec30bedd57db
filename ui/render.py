"""Text from documents shown safely: literal (no markdown, no HTML), with highlighted support."""

from __future__ import annotations

import re
from typing import Any

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|<>~$:=&^])")


def plain(text: str) -> str:
    """Text shown literally by st.markdown: every markdown/HTML character escaped, line breaks kept."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", text).replace("\n", "  \n")


def highlighted(passage: str, spans: list[tuple[int, int]]) -> str:
    """The passage as literal text with its supporting spans highlighted."""
    out, last = [], 0
    for start, end in spans:
        out.append(plain(passage[last:start]))
        out.append(f":orange-background[{plain(passage[start:end])}]")
        last = end
    out.append(plain(passage[last:]))
    return "".join(out)


def describe_timings(timings: Any) -> dict[str, float]:
    """The answer's timings as the page's caption shows them (milliseconds, seconds, tokens/s)."""
    return {
        "retrieval": timings.retrieval_ms,
        "first": (timings.first_token_ms or 0) / 1000,
        "tps": timings.tokens_per_s,
    }
