"""The GBNF check (issue 30): what llama.cpp would fail on (and then crash with) is refused here, by rule and line.

The same grammars against llama.cpp's own parser, in a child process: tests/integration/test_grammar_property.py.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rag.answering.quotes import answer_grammar
from rag.llm.gbnf import GrammarError, check_grammar

# Passages as retrieval returns them from real documents: headings, cells, captions, odd characters.
ODD_PASSAGES = [
    "Tuvalu",
    "42",
    "3.14159",
    "—",
    "...",
    "!?;:,.",
    '"',
    '""""',
    "\\",
    "\\x41 \\u00e9 \\n",
    "| 2018 | 1,577 | 1,373 |",
    "Revenue\t$ 32,765\t$ 31,657",
    "x" * 5000,
    ("word " * 2000).strip(),
    "ligne\u2028séparée\u2029paragraphe",
    "bell\x07 and nul\x00 and escape\x1b[0m.",
    "zero\u200bwidth\ufeffjoiner",
    "مرحبا بالعالم، هذه جملة عربية طويلة بما يكفي.",
    "שלום עולם, זה משפט בעברית.",
    "\u202eRTL override text that is long enough.",
    "emoji 😀 and a flag 🇫🇷 and math 𝔘𝔫𝔦𝔠𝔬𝔡𝔢.",
    "lone surrogate \ud800 in extracted text, long enough.",
    "Page 3",
    "",
    "   \n\t  ",
    'He said "yes" and then "no", and left.',
    'root ::= "x"\np2 ::=',
    "# not a comment, a hash sign in a sentence.",
]


@pytest.mark.parametrize("passage", ODD_PASSAGES, ids=range(len(ODD_PASSAGES)))
def test_odd_passages_make_valid_grammars(passage):
    for passages in ([passage], [passage, "A normal sentence of the document."], [passage] * 4):
        check_grammar(answer_grammar(passages))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=0, max_size=4))
def test_generated_passages_make_valid_grammars(passages):
    check_grammar(answer_grammar(passages))


@pytest.mark.parametrize(
    ("grammar", "said"),
    [
        ('root ::= "a" p2\np2 ::= \np3 ::= "x"\n', "rule 'p2' is empty (rule 'p2', line 2"),
        ('root ::= "a" p\np ::=', "rule 'p' is empty"),
        ('root ::= "a" |\nb ::= "c"\n', "rule 'root' ends with an empty alternative"),
        ("root ::= a\n", "rule 'root' uses 'a', which is not defined (line 1)"),
        ('x ::= "a"\n', "it has no 'root' rule"),
        ('root ::= "a\\q"\n', "unknown escape '\\q' (rule 'root', line 1"),
        ('root ::= "\\x4"\n', "'\\x' needs 2 hexadecimal digits"),
        ('root ::= "abc\n', "a literal is not closed"),
        ("root ::= [a-\n", "a character class is not closed"),
        ('root ::= ("a"\n', "expecting ')'"),
        ('root ::= "a"\nroot ::= "b"\n', "rule 'root' is defined twice (rule 'root', line 2"),
        ('root ::= root "a"\n', "rule 'root' can start with itself (left recursion)"),
        ('root ::= x "a"\nx ::= "" | root\n', "rule 'root' can start with itself"),
        ('root ::= * "a"\n', "'*' follows nothing it could repeat"),
        ("root ::= [a-z]{2,1}\n", "a repetition of at least 2 and at most 1"),
        ('root ::= "a" ) \n', "expecting a newline or the end after the rule"),
        ('root_x ::= "a"\n', "expecting '::='"),
        ('root ::= "\ud800"\n', "a character UTF-8 cannot encode"),
        ('root ::= "a\\x00b"\n', "a NUL character in a literal (llama.cpp aborts"),
        ('root ::= "a\\u0000"\n', "a NUL character in a literal"),
        ('root ::= "a\x00"\n', "a NUL character (line 1)"),
    ],
)
def test_a_bad_grammar_is_refused_with_its_rule_and_line(grammar, said):
    with pytest.raises(GrammarError) as refused:
        check_grammar(grammar)
    assert said in str(refused.value)


@pytest.mark.parametrize(
    "grammar",
    [
        'root ::= "a"\n',
        'root ::=\n  "a" |\n  "b"\n',  # a body on the next line, an alternative continued on the next
        'root ::= | "a"\n',  # an empty alternative, on its rule's line
        'root ::= x\nx ::= "a" x | ""\n',  # right recursion
        'root ::= ([a-z] | "\\x41" | "\\u00e9" | "\\U0001F600")+ [^\\n]* . {0,3} "b"{2} "c"{1,}\n',
        '# a comment\nroot ::= "a" # and another\n\n',
        'root ::= "a"\r\nb ::= "b"\r\n',
    ],
)
def test_valid_grammars_are_accepted(grammar):
    check_grammar(grammar)


def test_llama_cpp_bundled_grammars_are_accepted():
    grammars = pytest.importorskip("llama_cpp.llama_grammar")
    bundled = {name: value for name, value in vars(grammars).items() if name.endswith("_GBNF")}
    assert len(bundled) >= 5
    for name, text in bundled.items():
        try:
            check_grammar(text)
        except GrammarError as exc:
            raise AssertionError(f"{name}: {exc}") from None
