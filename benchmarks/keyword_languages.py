"""Keyword search that knows French and English: BM25 recall with the shipped terms against other ways of
cutting words, on the evaluation stores (issue 37).

Each way indexes the same chunks of a store built by ``python -m evaluation SET`` (seed 13) in memory (bm25s,
the product's in-memory index scoring) and asks the same seeded questions, in their own language and, with
``--translations``, in the other one:

- ``plural``: folded words, stop words out, a final -s/-x cut (the terms before issue 37);
- ``snowball``: folded words, stop words out, each word cut by the Snowball stemmer of the text's language
  (a chunk's detected language; the question's own), as ``rag.text.keyword_tokens`` does now.

    .venv/bin/python benchmarks/keyword_languages.py --sets piaf covid_qa
    .venv/bin/python benchmarks/keyword_languages.py --sets covid_qa \\
        --translations evaluation/crosslingual/covid_qa_fr.jsonl
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def plural_tokens(text: str, language: str = "") -> list[str]:
    """The terms before issue 37: folded words, stop words out, a final -s/-x cut."""
    from rag.text import STOPWORDS, fold

    out = []
    for w in re.findall(r"\w+", fold(text)):
        if w in STOPWORDS or (len(w) < 2 and not w.isdigit()):
            continue
        if len(w) > 4 and w[-1] in "sx" and not w.isdigit():
            w = w[:-1]
        out.append(w)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sets", nargs="+", default=["piaf", "covid_qa"])
    ap.add_argument("--limit", type=int, default=300)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument("--translations", type=Path, help="JSONL id + question: the same questions in another language")
    ap.add_argument("--workdir", type=Path, default=REPO / "eval-runs")
    args = ap.parse_args()

    import bm25s

    from evaluation import metrics as m
    from evaluation.__main__ import asked_both_ways
    from evaluation.runner import GoldChunks, sample_questions, store_dir_for
    from evaluation.sets import read_jsonl
    from rag.models.embedding import embedding_model_info
    from rag.search.store import open_store
    from rag.settings import load_settings
    from rag.text import detect_language, keyword_tokens

    settings = load_settings()
    ways = {"plural": plural_tokens, "snowball": keyword_tokens}
    rows = []
    for name in args.sets:
        s = settings.model_copy(deep=True)
        s.paths.store_dir = store_dir_for(args.workdir / name, settings)
        store = open_store(s, embedding_model_info(s), create=False)
        ids, texts = zip(*store.iter_search_texts(), strict=True)
        languages = [detect_language(t) for t in texts]
        every = read_jsonl(args.workdir / name / "questions.jsonl")
        questions = sample_questions(every, args.limit, 0, args.seed)
        asked = {"own": [q.question for q in questions]}
        if args.translations:
            questions, own, other = asked_both_ways(every, args.translations)
            asked = {"own": own, "other": other}
        gold_index = GoldChunks(store)
        golds = [gold_index.of(q) for q in questions]
        for way, tokens in ways.items():
            t0 = time.perf_counter()
            corpus = [tokens(t, lang) or [""] for t, lang in zip(texts, languages, strict=True)]
            index = bm25s.BM25()
            index.index(corpus, show_progress=False)
            index_s = time.perf_counter() - t0
            vocab = set(index.vocab_dict)
            for label, qs in asked.items():
                recall = {5: [], 10: []}
                for q, gold in zip(qs, golds, strict=True):
                    terms = [t for t in tokens(q, detect_language(q)) if t in vocab]
                    ranked: list[str] = []
                    if terms:
                        docs, scores = index.retrieve([terms], k=min(10, len(ids)), show_progress=False)
                        ranked = [ids[int(d)] for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
                    for k in recall:
                        recall[k].append(m.recall_at(ranked, gold, k))
                row = {"set": name, "asked": label, "terms": way, "questions": len(qs)}
                row |= {f"recall@{k}": round(sum(v) / len(v), 3) for k, v in recall.items()}
                row |= {"vocabulary": len(vocab), "index_s": round(index_s, 1)}
                rows.append(row)
                print(json.dumps(row), flush=True)
    keys = [k for k in rows[0] if k not in ("set", "asked", "terms")]
    print("\n| set | asked | terms | " + " | ".join(keys) + " |")
    print("|---|---|---|" + "---|" * len(keys))
    for r in rows:
        print(f"| {r['set']} | {r['asked']} | {r['terms']} | " + " | ".join(str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main()
