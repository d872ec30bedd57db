"""Would narrowing what may be quoted lose the sentence that answers? (issue 36, item 4)

The quote grammar lets the model quote any sentence of the passages it reads, headings and title lines
included. Narrowing it to the sentences that share a search term with the question (stemmed, stop words out:
``rag.text.keyword_tokens``) would keep the model off those, but also off an answer written as a paraphrase
or behind a pronoun. With no model at all, for each answerable question: the paragraph of its document that
holds the reference answer, its sentences as a quote holds them, and for each rule the share of questions
whose answering sentence the rule would leave out (a paragraph with no sentence kept keeps them all) and the
share of sentences kept::

    .venv/bin/python -m benchmarks.quote_sentences --sets piaf covid_qa --limit 400

The sets are the evaluation's converted ones (``python -m evaluation SET`` writes them into eval-runs/).
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections.abc import Callable
from pathlib import Path

from benchmarks.citation_ceiling import sentences
from rag.answering.quotes import quotable
from rag.text import detect_language, keyword_tokens

ROOT = Path(__file__).resolve().parent.parent
SHORT_WORDS = 8

Rule = Callable[[list[str], set[int]], set[int]]  # sentences, those on topic -> those kept


RULES: dict[str, Rule] = {
    "on topic only": lambda s, on: on,
    "on topic and their neighbours": lambda s, on: {j for i in on for j in (i - 1, i, i + 1) if 0 <= j < len(s)},
    f"all but off-topic sentences of <= {SHORT_WORDS} words": lambda s, on: {
        i for i, t in enumerate(s) if i in on or len(t.split()) > SHORT_WORDS
    },
}


def measure(folder: Path, limit: int, seed: int) -> tuple[int, dict[str, tuple[float, float]]]:
    """(questions counted, rule -> (share whose answering sentence it leaves out, share of sentences kept))."""
    rows = [json.loads(line) for line in (folder / "questions.jsonl").open(encoding="utf-8")]
    rows = [r for r in rows if r["answerable"]]
    random.Random(seed).shuffle(rows)
    lost = dict.fromkeys(RULES, 0)
    kept = dict.fromkeys(RULES, 0.0)
    counted = 0
    for row in rows[:limit]:
        text = (folder / "corpus" / row["evidence"][0]["document"]).read_text(encoding="utf-8")
        answer = row["answers"][0]
        paragraph = next((p for p in re.split(r"\n\s*\n", text) if answer in p), None)
        said = sentences(paragraph) if paragraph else []
        holding = {i for i, s in enumerate(said) if quotable(answer) in s}
        if len(said) < 2 or not holding:
            continue
        counted += 1
        language = detect_language(row["question"])
        terms = set(keyword_tokens(row["question"], language))
        on = {i for i, s in enumerate(said) if not terms.isdisjoint(keyword_tokens(s, language))}
        for name, rule in RULES.items():
            keep = rule(said, on) or set(range(len(said)))
            lost[name] += not holding & keep
            kept[name] += len(keep) / len(said)
    return counted, {name: (lost[name] / counted, kept[name] / counted) for name in RULES}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["piaf", "covid_qa"])
    parser.add_argument("--workdir", type=Path, default=ROOT / "eval-runs")
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--seed", type=int, default=13)
    args = parser.parse_args()
    print("| set | rule | answering sentence left out | sentences kept |")
    print("|---|---|---|---|")
    for name in args.sets:
        questions, figures = measure(args.workdir / name, args.limit, args.seed)
        for rule, (lost, kept) in figures.items():
            print(f"| {name} ({questions} questions) | {rule} | {lost:.3f} | {kept:.2f} |")


if __name__ == "__main__":
    main()
