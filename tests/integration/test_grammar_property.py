"""Every answer grammar we can build is one llama.cpp's own parser accepts (issue 30).

llama.cpp runs in a child process (tests/grammar_probe.py), so a grammar that crashes it fails the test that
sent it, with the grammar in the message, instead of killing pytest. Three sources of passages:
- every chunk of the three dev sets (PIAF, COVID-QA, FinanceBench PDFs), chunked by the product's own
  reader and splitter, taken 4 at a time as retrieval would give them;
- odd passages (a title alone, numbers, punctuation, control characters, RTL text, inner quotes, a table
  row, very long lines) and seeded random ones: each grammar parsed and also sampled by the real model;
- hand-written grammars, good and bad: what our check accepts, llama.cpp accepts.
Printed (pytest -s): how many grammars, and how many chunks had nothing to quote.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from devkit.models import smollm_path
from rag.answering.quotes import answer_grammar, quote_runs
from rag.llm.gbnf import GrammarError, check_grammar
from rag.llm.worker import crash_reason
from tests.conftest import REPO
from tests.unit.test_gbnf import ODD_PASSAGES

pytestmark = pytest.mark.integration

EVAL_DIR = Path(os.environ.get("SOURCIER_EVAL_DIR", REPO.parent / "shared" / "eval"))


class LlamaParser:
    """llama.cpp's grammar parser (and sampler) in a child process, one grammar at a time."""

    def __init__(self, model: Path, log: Path) -> None:
        self._log = log.open("wb")
        self.proc = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "grammar_probe.py"), str(model)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,  # llama.cpp says why it refuses a grammar
            text=True,
            encoding="utf-8",
        )

    def check(self, grammar: str, sample: bool = False) -> dict:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps({"grammar": grammar, "sample": sample}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            reason = crash_reason(self.proc.wait(timeout=30))
            raise AssertionError(f"llama.cpp's process died ({reason}) on this grammar:\n{grammar[:3000]}")
        return json.loads(line)

    def close(self) -> None:
        assert self.proc.stdin
        self.proc.stdin.close()
        self.proc.wait(timeout=30)
        self._log.close()


@pytest.fixture(scope="module")
def llama_parser(tmp_path_factory) -> Iterator[LlamaParser]:
    parser = LlamaParser(smollm_path(), tmp_path_factory.mktemp("probe") / "stderr.log")
    try:
        yield parser
    finally:
        parser.close()
    assert parser.proc.returncode == 0  # it ended when asked, and outlives nothing


def dev_set_chunks(name: str, tmp: Path) -> list[str]:
    """The text of every chunk the product makes of a dev set (its default chunking: 128 tokens, context
    headers on), read by both cores (the FinanceBench PDFs take minutes)."""
    from concurrent.futures import ProcessPoolExecutor

    from evaluation.sets import convert_squad

    if name == "financebench":
        files = sorted((EVAL_DIR / "financebench_dev" / "pdfs").glob("*.pdf"))
    else:
        source = {"piaf": "piaf/piaf-v1.0.json", "covid_qa": "covid_qa/200423_covidQA.json"}[name]
        convert_squad(EVAL_DIR / source, tmp / name, holdout=0.0)
        files = sorted((tmp / name).rglob("*.txt"))
    with ProcessPoolExecutor(2) as pool:
        return [text for texts in pool.map(chunk_texts, files, chunksize=4) for text in texts]


def chunk_texts(path: Path) -> list[str]:
    """One file's chunks, as the ingest reads and splits it."""
    from ingest.discover import SUPPORTED_SUFFIXES
    from ingest.workers import Parsed, ParseJob, parse
    from rag.models.embedding import embedding_model_info, load_token_counter
    from rag.settings import Settings

    settings = Settings()
    c = settings.chunking
    job = ParseJob(
        path, SUPPORTED_SUFFIXES[path.suffix.lower()], path.name, c.chunk_tokens, c.overlap_tokens, c.context_tokens
    )
    parsed = parse(job, load_token_counter(embedding_model_info(settings)))
    assert isinstance(parsed, Parsed), f"{path.name}: {parsed}"
    return [chunk.text for chunk in parsed.chunks]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["piaf", "covid_qa", "financebench"])
def test_llama_cpp_accepts_the_grammar_of_every_dev_set_chunk(name, llama_parser, tmp_path):
    if not EVAL_DIR.is_dir():
        pytest.skip(f"the dev sets are not at {EVAL_DIR} (set SOURCIER_EVAL_DIR)")
    t0 = time.perf_counter()
    chunks = dev_set_chunks(name, tmp_path)
    assert len(chunks) > 500
    # Retrieval's 4 passages come from anywhere in the corpus: consecutive ones, and a seeded shuffle.
    shuffled = random.Random(30).sample(chunks, len(chunks))
    groups = [chunks[i : i + 4] for i in range(0, len(chunks), 4)] + [
        shuffled[i : i + 4] for i in range(0, len(chunks), 4)
    ]
    for passages in groups:
        grammar = answer_grammar(passages)
        check_grammar(grammar)
        assert llama_parser.check(grammar)["parsed"], grammar[:3000]
    unquotable = [c for c in chunks if not any(quote_runs([c.strip()]))]
    print(
        f"\n{name}: {len(chunks)} chunks, {len(groups)} grammars accepted by llama.cpp, "
        f"{len(unquotable)} chunks alone would have nothing to quote, {time.perf_counter() - t0:.0f} s"
    )


def random_passages(count: int, seed: int = 30) -> list[str]:
    """Seeded passages drawn from every kind of character: letters of several scripts, digits, punctuation,
    quotes, blanks and line breaks, control and format characters, surrogates, emoji."""
    rng = random.Random(seed)
    pools = [
        "abcdefghij ABCDEF éèàçôœ",
        "0123456789 ,.;:!?%$€",
        "\"'“”«»‘’`\\[]{}()<>|#=*+-—–_/",
        " \t\n\r\u00a0\u2028\u2029\u200b\ufeff",
        "\x00\x01\x07\x1b\x7f\u0085\u202e\u2066",
        "مرحبا שלום Привет 你好 こんにちは",
        "😀🇫🇷𝔘\ud800\udfff",
    ]
    passages = []
    for _ in range(count):
        length = rng.choice([1, 3, 8, 20, 80, 400])
        passages.append("".join(rng.choice(rng.choice(pools)) for _ in range(length)))
    return passages


def test_llama_cpp_parses_and_samples_under_the_grammars_of_odd_passages(llama_parser):
    passages = ODD_PASSAGES + random_passages(120)
    groups = [[p] for p in passages] + [passages[i : i + 4] for i in range(0, len(passages), 4)]
    sampled = 0
    for group in groups:
        grammar = answer_grammar(group)
        check_grammar(grammar)
        reply = llama_parser.check(grammar, sample=True)
        assert reply["parsed"], grammar[:3000]
        sampled += "text" in reply
    assert sampled == len(groups)
    print(f"\n{len(groups)} grammars of odd passages parsed and sampled by llama.cpp")


GOOD = [
    'root ::= "a"\n',
    'root ::=\n  "a" |\n  "b"\n',
    'root ::= | "a"\n',
    'root ::= x\nx ::= "a" x | ""\n',
    'root ::= ([a-z] | "\\x41" | "\\u00e9" | "\\U0001F600")+ [^\\n]* . {0,3} "b"{2} "c"{1,}\n',
    '# a comment\nroot ::= "a" # and another\n\n',
]
BAD = [
    'root ::= "a" p2\np2 ::= \np3 ::= "x"\n',
    'root ::= "a" |\nb ::= "c"\n',
    "root ::= a\n",
    'x ::= "a"\n',
    'root ::= "a\\q"\n',
    'root ::= "\\x4"\n',
    'root ::= "abc\n',
    "root ::= [a-\n",
    'root ::= ("a"\n',
    'root ::= root "a"\n',
    'root ::= * "a"\n',
    'root ::= "a" ) \n',
]
# Parsed by llama.cpp, then fatal when sampled (SIGABRT in llama-grammar.cpp): a NUL in a literal.
ABORTS = ['root ::= "a\\x00b"\n']
# Refused by our check though llama.cpp parses them: an empty last rule (matches nothing but ""), a rule
# defined twice (the second wins). Neither is ever what a grammar we build means.
STRICTER = ['root ::= "a" p\np ::=', 'root ::= "a"\nroot ::= "b"\n']


def test_what_our_check_accepts_llama_cpp_accepts_and_the_reverse(llama_parser):
    for grammar in GOOD:
        check_grammar(grammar)
        assert llama_parser.check(grammar)["parsed"], grammar
    for grammar in BAD:
        with pytest.raises(GrammarError):
            check_grammar(grammar)
        assert not llama_parser.check(grammar)["parsed"], grammar
    for grammar in ABORTS:
        with pytest.raises(GrammarError):
            check_grammar(grammar)
    for grammar in STRICTER:
        with pytest.raises(GrammarError):
            check_grammar(grammar)
        assert llama_parser.check(grammar)["parsed"], grammar
