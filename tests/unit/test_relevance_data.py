"""The relevance model's data (issue 36): the split by article is reproducible and disjoint, the checked-in
split is the one its seed gives, and each question's pairs are labelled as the evaluation scores chunks."""

from __future__ import annotations

import random
from collections import Counter

from evaluation.relevance import Chunks, Pair, load_split, pairs_for, split_articles
from evaluation.sets import Evidence, Question


def test_the_split_is_seeded_by_article_and_cut_70_10_20():
    names = [f"{i:04}-article.txt" for i in range(100)]
    split = split_articles(names)
    assert split == split_articles(list(reversed(names)))  # the order given changes nothing
    assert Counter(split.values()) == {"train": 70, "choose": 10, "test": 20}
    assert split != split_articles(names, seed=1)


def test_the_checked_in_split_is_what_its_seed_gives():
    for name, parts in load_split().items():
        assert split_articles(list(parts)) == parts, name
        counts = Counter(parts.values())
        assert counts["test"] >= 0.18 * len(parts) and counts["choose"] >= 0.09 * len(parts), name


class FakeChunks(Chunks):
    def __init__(self, chunks: dict[str, tuple[str, str]]) -> None:  # id -> (document, passage)
        self.source = {c: doc for c, (doc, _) in chunks.items()}
        self.passage = {c: text for c, (_, text) in chunks.items()}
        self.by_document: dict[str, list[str]] = {}
        for c, doc in sorted(self.source.items()):
            self.by_document.setdefault(doc, []).append(c)


def test_a_question_gets_its_gold_chunks_on_topic_negatives_and_the_searchs_wrong_chunks():
    chunks = FakeChunks(
        {
            "a1": ("a.txt", "The storage outage lasted 47 minutes."),
            "a2": ("a.txt", "The storage team met on Monday."),
            "a3": ("a.txt", "Backups run nightly."),
            "b1": ("b.txt", "An outage of the network lasted 3 hours."),
            "b2": ("b.txt", "Another note: it lasted 47 minutes too."),  # holds the answer: ambiguous, left out
            "c1": ("c.txt", "Storage prices fell."),
        }
    )
    question = Question("q1", "How long did the storage outage last?", ["47 minutes"], [Evidence("a.txt")])
    pairs = pairs_for(question, "set", "train", {"a1"}, chunks, ["b2", "a1", "b1", "c1"], random.Random(0))
    got = {(p.chunk_id, p.label, p.kind) for p in pairs}
    assert got == {
        ("a1", 1, "gold"),
        ("a2", 0, "same_article"),
        ("a3", 0, "same_article"),
        ("b1", 0, "other_article"),
        ("c1", 0, "other_article"),
    }
    assert all(isinstance(p, Pair) and p.passage == chunks.passage[p.chunk_id] for p in pairs)
    assert pairs_for(question, "set", "train", set(), chunks, ["a1"], random.Random(0)) == []
