"""Data for a relevance model of our own (issue 36): the split by article, and (question, passage, label) pairs
made by the product's own pipeline.

The split: each SQuAD-format set's articles (PIAF, COVID-QA; named as ``evaluation.sets.convert_squad`` names
them), shuffled with a fixed seed, 70% ``train``, 10% ``choose`` (epochs, thresholds, calibration) and 20%
``test`` (held out: touched once, for the final report). It is written to ``evaluation/sets/relevance_split.json``
so anyone can check it; FinanceBench and ``evaluation/crosslingual`` are never trained on.

The pairs, for each answerable question whose article holds a gold chunk (a chunk of the article containing an
answer text, as the evaluation scores it): every gold chunk (label 1); the other chunks of the same article (on
topic, without the answer: the hard case; label 0); the hybrid search's best chunks from other articles (label
0; one that happens to contain an answer text is left out as ambiguous). Each passage is what the reranker reads
in the product: the chunk's context header, then its text.
"""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from evaluation.runner import GoldChunks, _squash
from evaluation.sets import Question
from rag.search.store import Store
from rag.text import search_text

SPLIT_FILE = Path(__file__).parent / "sets" / "relevance_split.json"
SHARES = (("train", 0.7), ("choose", 0.1), ("test", 0.2))
SEED = 36


def split_articles(names: Sequence[str], seed: int = SEED) -> dict[str, str]:
    """Each article's part (train / choose / test): sorted, shuffled with ``seed``, cut 70 / 10 / 20."""
    order = sorted(set(names))
    random.Random(seed).shuffle(order)
    cuts, start = {}, 0
    for i, (part, share) in enumerate(SHARES):
        end = len(order) if i == len(SHARES) - 1 else start + round(len(order) * share)
        cuts.update(dict.fromkeys(order[start:end], part))
        start = end
    return dict(sorted(cuts.items()))


def load_split(path: Path = SPLIT_FILE) -> dict[str, dict[str, str]]:
    """{set: {article: part}} as written in the repository."""
    return json.loads(path.read_text(encoding="utf-8"))["sets"]


def write_split(articles: dict[str, Sequence[str]], path: Path = SPLIT_FILE, seed: int = SEED) -> None:
    sets = {name: split_articles(names, seed) for name, names in sorted(articles.items())}
    about = (
        "Issue 36: each set's articles (as evaluation.sets.convert_squad names them), sorted, shuffled with "
        f"random.Random({seed}), cut 70% train / 10% choose / 20% test. Written by "
        "`python -m evaluation.relevance split`; the test part is never trained on nor used to choose anything."
    )
    path.write_text(json.dumps({"about": about, "seed": seed, "sets": sets}, indent=1, ensure_ascii=False) + "\n")


@dataclass(frozen=True)
class Pair:
    set: str
    part: str
    question_id: str
    question: str
    passage: str  # the context header, then the chunk's text: what the reranker reads
    label: int  # 1: the chunk holds an answer text
    kind: str  # "gold", "same_article", "other_article"
    chunk_id: str


class Chunks:
    """The store's chunks by id and by document, as the reranker reads them."""

    def __init__(self, store: Store) -> None:
        texts = dict(store.iter_documents())
        self.source: dict[str, str] = {}
        self.passage: dict[str, str] = {}
        self.by_document: dict[str, list[str]] = {}
        for chunk_id, meta in store.iter_metadatas():
            self.source[chunk_id] = str(meta.get("source", ""))
            self.passage[chunk_id] = search_text(texts.get(chunk_id, ""), str(meta.get("context", "")))
            self.by_document.setdefault(self.source[chunk_id], []).append(chunk_id)
        for ids in self.by_document.values():
            ids.sort()


def holds_answer(passage: str, answers: Sequence[str]) -> bool:
    """As the evaluation finds gold chunks: an answer text within the passage, whitespace squashed."""
    squashed = _squash(passage)
    return any(_squash(a) in squashed for a in answers if a.strip())


def pairs_for(
    question: Question,
    set_name: str,
    part: str,
    gold: set[str],
    chunks: Chunks,
    searched: Sequence[str],
    rng: random.Random,
    same_article: int = 6,
    other_articles: int = 4,
) -> list[Pair]:
    """The labelled pairs of one question (see the module's docstring); ``searched``: the hybrid search's
    chunk ids for it, best first. Empty when its article holds no gold chunk."""
    if not gold:
        return []
    document = question.evidence[0].document

    def pair(chunk_id: str, label: int, kind: str) -> Pair:
        text = chunks.passage[chunk_id]
        return Pair(set_name, part, question.id, question.question, text, label, kind, chunk_id)

    rows = [pair(c, 1, "gold") for c in sorted(gold)]
    same = [c for c in chunks.by_document.get(document, []) if c not in gold]
    rows += [pair(c, 0, "same_article") for c in rng.sample(same, min(same_article, len(same)))]
    others = [
        c
        for c in searched
        if chunks.source.get(c) != document
        and c in chunks.passage
        and not holds_answer(chunks.passage[c], question.answers)
    ]
    rows += [pair(c, 0, "other_article") for c in others[:other_articles]]
    return rows


@dataclass(frozen=True)
class Ranking:
    """What the reranker is given for one question in the product: the hybrid search's candidates, best first,
    with which of them are gold; a model is scored by where it puts the first gold one."""

    set: str
    part: str
    question_id: str
    question: str
    passages: list[str]
    gold: list[int]  # 1 where the candidate is a gold chunk


def build(
    set_name: str,
    questions: Sequence[Question],
    split: dict[str, str],
    store: Store,
    search: Any,
    seed: int = SEED,
) -> Iterator[tuple[list[Pair], Ranking]]:
    """Every answerable question's pairs and ranking; ``search(question) -> chunk ids`` is the hybrid search
    without a reranker (its mistakes, not the packaged reranker's, are the negatives)."""
    gold_of = GoldChunks(store)
    chunks = Chunks(store)
    rng = random.Random(seed)
    for q in questions:
        if not q.answerable or not q.evidence:
            continue
        part = split.get(q.evidence[0].document)
        if part is None:
            continue
        gold, searched = gold_of.of(q), search(q.question)
        ranking = Ranking(
            set_name,
            part,
            q.id,
            q.question,
            [chunks.passage[c] for c in searched],
            [int(c in gold) for c in searched],
        )
        yield pairs_for(q, set_name, part, gold, chunks, searched, rng), ranking


def write_jsonl(rows: Iterator[Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(asdict(row), ensure_ascii=False) + "\n")


def _articles(eval_dir: Path, workdir: Path) -> dict[str, tuple[Path, Path]]:
    """Each SQuAD set converted with every article in its corpus: {set: (questions.jsonl, corpus)}."""
    from evaluation.__main__ import KNOWN
    from evaluation.sets import convert_squad

    out = {}
    for name in ("piaf", "covid_qa"):
        path = convert_squad(eval_dir / KNOWN[name], workdir / name, holdout=0.0)
        out[name] = (path, workdir / name / "corpus")
    return out


def main(argv: list[str] | None = None) -> int:
    import argparse

    from evaluation.__main__ import REPO

    ap = argparse.ArgumentParser(prog="python -m evaluation.relevance", description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["split", "pairs"], help="write the split file, or the pairs of every part")
    ap.add_argument("--eval-dir", type=Path, default=REPO.parent / "shared" / "eval")
    ap.add_argument("--workdir", type=Path, default=REPO / "eval-runs" / "relevance")
    args = ap.parse_args(argv)
    sets = _articles(args.eval_dir, args.workdir)
    if args.what == "split":
        write_split({name: sorted(p.name for p in corpus.iterdir()) for name, (_, corpus) in sets.items()})
        print(f"split: {SPLIT_FILE}")
        return 0

    from rich.console import Console

    from evaluation.__main__ import ingest_corpus
    from evaluation.runner import store_dir_for
    from evaluation.sets import read_jsonl
    from rag.models.embedding import load_embedder
    from rag.search.retrieval import Retriever
    from rag.settings import Settings

    split = load_split()
    for name, (questions_path, corpus) in sets.items():
        settings = Settings()
        settings.retrieval.reranker = "none"
        settings.paths.store_dir = store_dir_for(args.workdir / name, settings)
        store = ingest_corpus(settings, corpus, Console(stderr=True))
        retriever = Retriever(store, load_embedder(settings), settings, None)

        def search(question: str, retriever: Retriever = retriever, k: int = settings.retrieval.candidates_for_rerank):
            return [p.chunk_id for p in retriever.hybrid(question, k)]

        built = list(build(name, read_jsonl(questions_path), split[name], store, search))
        pairs = [p for rows, _ in built for p in rows]
        write_jsonl(iter(pairs), args.workdir / f"pairs-{name}.jsonl")
        write_jsonl((r for _, r in built), args.workdir / f"rankings-{name}.jsonl")
        counts: dict[str, int] = {}
        for p in pairs:
            counts[f"{p.part}/{p.kind}"] = counts.get(f"{p.part}/{p.kind}", 0) + 1
        print(name, json.dumps(counts, sort_keys=True), f"{len(built)} questions", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
