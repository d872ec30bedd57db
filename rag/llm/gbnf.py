"""A GBNF grammar checked in Python before llama.cpp sees it.

llama.cpp parses a grammar only when a sampler is built from it, and a grammar it cannot parse leaves it
with no grammar at all: llama-cpp-python 0.3.36 then crashes the process (SIGSEGV) at the first token.
:func:`check_grammar` reads a grammar by GBNF's own rules (those of llama.cpp's parser: rule names of
letters, digits and ``-``; literals, character classes, groups, ``.``, the repetitions ``* + ? {m,n}``;
a newline ends a rule except inside a group or after ``|``) and is stricter where a grammar we build can
only be wrong: a rule with an empty body, a reference to a rule that is not defined, a
rule defined twice, no ``root`` rule, a rule that can start with itself (left recursion, which llama.cpp
refuses), a character UTF-8 cannot encode, a NUL character in a literal (llama.cpp aborts when it samples
one: found by tests/integration/test_grammar_property.py). A bad grammar is a :class:`GrammarError` naming the
rule and the line, never a crash.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rag.errors import SourcierError

_HEX_ESCAPES = {"x": 2, "u": 4, "U": 8}
_SIMPLE_ESCAPES = frozenset('trn\\"[]')
_HEX = frozenset("0123456789abcdefABCDEF")
_RULE_START = re.compile(r"[A-Za-z0-9-]+[ \t]*::=")
_LITERAL = re.compile(r'"(?:[^"\\]|\\.)*"', re.S)  # a backslash always takes the character after it
_ESCAPE = re.compile(r"\\.", re.S)


class GrammarError(SourcierError):
    """A GBNF grammar llama.cpp would fail on (or crash with): the message names the rule and the line."""


@dataclass
class Item:
    """One element of a sequence: a literal, a class, ``.``, a rule reference or a group, repeated at least
    ``minimum`` times (1 unless followed by ``* ? {0,...}``)."""

    kind: str  # "literal", "class", "any", "ref", "group"
    empty: bool = False  # a literal "" matches nothing but the empty string
    name: str = ""  # the rule a "ref" names
    alternatives: list[list[Item]] = field(default_factory=list)  # a group's
    minimum: int = 1
    at: int = 0  # where it starts in the grammar's text (its line is counted only for an error)


@dataclass
class Grammar:
    """A checked grammar: each rule's alternatives (sequences of items), in the order they were defined."""

    text: str = ""
    rules: dict[str, list[list[Item]]] = field(default_factory=dict)

    def line(self, at: int) -> int:
        return _line(self.text, at)


def check_grammar(text: str) -> Grammar:
    """``text`` parsed by GBNF's rules; raises :class:`GrammarError` on anything llama.cpp would refuse."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise GrammarError(
            f"invalid grammar: a character UTF-8 cannot encode ({text[exc.start]!r}, line {_line(text, exc.start)})"
        ) from None
    if "\x00" in text:  # llama.cpp reads the grammar as a C string: it would end there
        at = text.index("\x00")
        raise GrammarError(f"invalid grammar: a NUL character (line {_line(text, at)})")
    grammar = _Parser(text).parse()
    _check_references(grammar)
    _check_left_recursion(grammar)
    return grammar


class _Parser:
    """A recursive-descent reader of GBNF, position by position as llama.cpp reads it."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.rule = ""

    def fail(self, what: str, pos: int | None = None) -> GrammarError:
        at = self.pos if pos is None else pos
        where = f"rule '{self.rule}', line {_line(self.text, at)}" if self.rule else f"line {_line(self.text, at)}"
        near = self.text[at : at + 30].split("\n")[0]
        return GrammarError(f"invalid grammar: {what} ({where}{f', at {near!r}' if near else ''})")

    def peek(self, offset: int = 0) -> str:
        at = self.pos + offset
        return self.text[at] if at < len(self.text) else ""

    def space(self, newline_ok: bool) -> None:
        while (ch := self.peek()) and (ch in " \t#" or (newline_ok and ch in "\r\n")):
            if ch == "#":  # a comment runs to the end of its line
                while (c := self.peek()) and c not in "\r\n":
                    self.pos += 1
            else:
                self.pos += 1

    def parse(self) -> Grammar:
        grammar = Grammar(self.text)
        self.space(newline_ok=True)
        while self.pos < len(self.text):
            self.rule = ""
            start = self.pos
            name = self.name()
            self.rule = name
            if name in grammar.rules:
                raise self.fail(f"rule '{name}' is defined twice", start)
            grammar.rules[name] = self.rule_body()
        return grammar

    def rule_body(self) -> list[list[Item]]:
        self.space(newline_ok=False)
        if self.text[self.pos : self.pos + 3] != "::=":
            raise self.fail("expecting '::='")
        self.pos += 3
        body = self.pos
        self.space(newline_ok=True)  # a body may start on the next line
        if self.at_rule_start():  # llama.cpp would read the next rule's name as this one's body
            raise self.fail(f"rule '{self.rule}' is empty", body)
        alternatives = self.alternates(nested=False)
        ch = self.peek()
        if ch == "\r":
            self.pos += 2 if self.peek(1) == "\n" else 1
        elif ch == "\n":
            self.pos += 1
        elif ch:
            raise self.fail("expecting a newline or the end after the rule")
        self.space(newline_ok=True)
        return alternatives

    def at_rule_start(self) -> bool:
        """Whether the end, or another rule's ``name ::=``, comes next."""
        return self.pos >= len(self.text) or bool(_RULE_START.match(self.text, self.pos))

    def name(self) -> str:
        start = self.pos
        while _word_char(self.peek()):
            self.pos += 1
        if self.pos == start:
            raise self.fail("expecting a rule name")
        return self.text[start : self.pos]

    def alternates(self, nested: bool) -> list[list[Item]]:
        alternatives = [self.sequence(nested)]
        while self.peek() == "|":
            self.pos += 1
            self.space(newline_ok=True)
            if self.at_rule_start():
                raise self.fail(f"rule '{self.rule}' ends with an empty alternative")
            alternatives.append(self.sequence(nested))
        return alternatives

    def sequence(self, nested: bool) -> list[Item]:
        items: list[Item] = []
        while ch := self.peek():
            at = self.pos
            if ch == '"':
                items.append(Item("literal", empty=self.literal(), at=at))
            elif ch == "[":
                self.char_class()
                items.append(Item("class", at=at))
            elif _word_char(ch):
                items.append(Item("ref", name=self.name(), at=at))
            elif ch == "(":
                self.pos += 1
                self.space(newline_ok=True)
                group = self.alternates(nested=True)
                if self.peek() != ")":
                    raise self.fail("expecting ')'")
                self.pos += 1
                items.append(Item("group", alternatives=group, at=at))
            elif ch == ".":
                self.pos += 1
                items.append(Item("any", at=at))
            elif ch in "*+?{":
                if not items:
                    raise self.fail(f"'{ch}' follows nothing it could repeat")
                items[-1].minimum *= self.repetition()
            else:
                break
            self.space(newline_ok=nested)
        return items

    def literal(self) -> bool:
        """Reads a quoted literal; whether it is empty. Found whole by a regular expression, then each of its
        escapes checked (literals are most of a quote grammar: read character by character, they took 8 ms)."""
        start = self.pos
        found = _LITERAL.match(self.text, start)
        if found is None:
            raise self.fail("a literal is not closed", start)
        for escape in _ESCAPE.finditer(self.text, start + 1, found.end() - 1):
            self.pos = escape.start()
            self.char(literal=True)
        self.pos = found.end()
        return found.end() - start == 2

    def char_class(self) -> None:
        start = self.pos
        self.pos += 1
        if self.peek() == "^":
            self.pos += 1
        while self.peek() != "]":
            if not self.peek():
                raise self.fail("a character class is not closed", start)
            self.char()
            if self.peek() == "-" and self.peek(1) != "]":
                self.pos += 1
                if not self.peek():
                    raise self.fail("a character range is not closed", start)
                self.char()
        self.pos += 1

    def char(self, literal: bool = False) -> None:
        """One character of a literal or class: itself, or an escape llama.cpp knows."""
        if self.peek() != "\\":
            self.pos += 1
            return
        kind = self.peek(1)
        if kind in _HEX_ESCAPES:
            size = _HEX_ESCAPES[kind]
            digits = self.text[self.pos + 2 : self.pos + 2 + size]
            if len(digits) != size or not set(digits) <= _HEX:
                raise self.fail(f"'\\{kind}' needs {size} hexadecimal digits")
            if literal and int(digits, 16) == 0:
                raise self.fail("a NUL character in a literal (llama.cpp aborts when it samples one)")
            self.pos += 2 + size
        elif kind in _SIMPLE_ESCAPES:
            self.pos += 2
        else:
            raise self.fail(f"unknown escape '\\{kind}'" if kind else "the grammar ends inside an escape")

    def repetition(self) -> int:
        """Reads ``* + ? {m} {m,} {m,n}``; the least number of times it allows."""
        ch = self.peek()
        self.pos += 1
        if ch in "*?":
            return 0
        if ch == "+":
            return 1
        self.space(newline_ok=False)
        minimum = self.integer()
        self.space(newline_ok=False)
        if self.peek() == ",":
            self.pos += 1
            self.space(newline_ok=False)
            if self.peek().isdigit():
                maximum = self.integer()
                if maximum < minimum:
                    raise self.fail(f"a repetition of at least {minimum} and at most {maximum}")
                self.space(newline_ok=False)
        if self.peek() != "}":
            raise self.fail("expecting '}'")
        self.pos += 1
        return minimum

    def integer(self) -> int:
        start = self.pos
        while self.peek() in tuple("0123456789"):
            self.pos += 1
        if self.pos == start:
            raise self.fail("expecting a number")
        return int(self.text[start : self.pos])


def _line(text: str, at: int) -> int:
    """The line (from 1) of position ``at``: counted only for an error message, never while parsing."""
    return text.count("\n", 0, at) + 1


def _word_char(ch: str) -> bool:
    return len(ch) == 1 and ch.isascii() and (ch.isalnum() or ch == "-")


def _walk(alternatives: list[list[Item]]):
    for sequence in alternatives:
        for item in sequence:
            yield item
            yield from _walk(item.alternatives)


def _check_references(grammar: Grammar) -> None:
    for rule, alternatives in grammar.rules.items():
        for item in _walk(alternatives):
            if item.kind == "ref" and item.name not in grammar.rules:
                where = f"line {grammar.line(item.at)}"
                raise GrammarError(f"invalid grammar: rule '{rule}' uses '{item.name}', which is not defined ({where})")
    if "root" not in grammar.rules:
        raise GrammarError("invalid grammar: it has no 'root' rule")


def _check_left_recursion(grammar: Grammar) -> None:
    """No rule may reach itself before reading a character (llama.cpp refuses such a grammar)."""
    nullable = _nullable_rules(grammar)

    def firsts(alternatives: list[list[Item]]) -> set[str]:
        found: set[str] = set()
        for sequence in alternatives:
            for item in sequence:
                if item.kind == "ref":
                    found.add(item.name)
                found |= firsts(item.alternatives)
                if not _can_be_empty(item, nullable):
                    break
        return found

    first = {rule: firsts(alternatives) for rule, alternatives in grammar.rules.items()}
    for rule in grammar.rules:
        seen: set[str] = set()
        todo = list(first[rule])
        while todo:
            name = todo.pop()
            if name == rule:
                raise GrammarError(f"invalid grammar: rule '{rule}' can start with itself (left recursion)")
            if name not in seen:
                seen.add(name)
                todo.extend(first[name])


def _can_be_empty(item: Item, nullable: set[str]) -> bool:
    """Whether ``item`` can match the empty string, given the rules known to (``nullable``)."""
    if item.minimum == 0:
        return True
    if item.kind == "literal":
        return item.empty
    if item.kind == "ref":
        return item.name in nullable
    if item.kind == "group":
        return any(all(_can_be_empty(i, nullable) for i in seq) for seq in item.alternatives)
    return False


def _nullable_rules(grammar: Grammar) -> set[str]:
    """The rules that can match the empty string (a fixed point over the rules)."""
    nullable: set[str] = set()
    changed = True
    while changed:
        changed = False
        for rule, alternatives in grammar.rules.items():
            if rule not in nullable and any(all(_can_be_empty(i, nullable) for i in seq) for seq in alternatives):
                nullable.add(rule)
                changed = True
    return nullable
