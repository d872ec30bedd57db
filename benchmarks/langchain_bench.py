"""What the LangChain face costs: our parts through LangChain against the same work done directly, same run.

1. Retrieval: ``SourcierRetriever.invoke`` (LangChain's callback manager, Documents built from passages)
   against ``Retriever.search`` on the same questions, store and models: ms per question and the ratio.
2. Answers: ``SourcierChain.invoke`` against ``Answerer.answer`` with the same model (the test GGUF by default,
   greedy, short answers): ms per question and the ratio; the answers must be the same text.
3. langchain-chroma's ``Chroma.similarity_search`` over our store against ``Store.nearest`` with the same
   query vector (vector search only): ms per question and the ratio.

Runs on a store of the sample documents built here with the real embedder.

    .venv/bin/python benchmarks/langchain_bench.py [--repeat 5] [--model path/to.gguf]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "How long did the storage outage last?",
    "What is the hotel cap per night in Paris?",
    "Combien de jours par semaine peut-on télétravailler ?",
    "Quelle température atteint le cœur du compost ?",
    "How many bird species were counted in 2024?",
]


def per_question_ms(fn, repeat: int) -> float:
    """Median over ``repeat`` rounds of the mean ms per question."""
    rounds = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        for q in QUESTIONS:
            fn(q)
        rounds.append((time.perf_counter() - t0) * 1000 / len(QUESTIONS))
    return statistics.median(rounds)


def row(name: str, ours: float, raw: float) -> None:
    print(f"| {name} | {ours:.1f} | {raw:.1f} | {ours / raw:.2f} |")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", type=Path, help="GGUF for the answer rows (default: the test model SmolLM2)")
    args = ap.parse_args()

    from devkit.models import smollm_path
    from rag.answering.answer import Answerer
    from rag.langchain import SourcierChain, SourcierRetriever, chroma_vectorstore
    from rag.llm import load_llm
    from rag.search.retrieval import build_retriever
    from rag.settings import PathSettings, Settings

    with tempfile.TemporaryDirectory() as tmp:
        store_dir = Path(tmp) / "store"
        subprocess.run(
            [sys.executable, "-m", "ingest", "-q", str(ROOT / "data"), "--store", str(store_dir)], check=True, cwd=ROOT
        )
        settings = Settings(paths=PathSettings(store_dir=store_dir))
        settings.llm.max_tokens = 32
        settings.llm.n_ctx = 2048
        retriever = build_retriever(settings)
        lc_retriever = SourcierRetriever(searcher=retriever, settings=settings)
        for q in QUESTIONS:  # warm both (first query embeds, loads the reranker)
            retriever.search(q)
            lc_retriever.invoke(q)

        print("| work | through LangChain, ms/question | direct, ms/question | ratio |")
        print("|---|---|---|---|")
        raw = per_question_ms(lambda q: retriever.search(q), args.repeat)
        ours = per_question_ms(lambda q: lc_retriever.invoke(q), args.repeat)
        row("retrieval (hybrid + rerank)", ours, raw)

        vectorstore = chroma_vectorstore(settings, embeddings=retriever.embedder)
        vectors = {q: retriever.embedder.embed_query(q) for q in QUESTIONS}
        raw = per_question_ms(lambda q: retriever.store.nearest(vectors[q], 4), args.repeat)
        ours = per_question_ms(lambda q: vectorstore.similarity_search_by_vector(vectors[q], k=4), args.repeat)
        row("vector search (langchain-chroma vs Store.nearest)", ours, raw)

        model = load_llm(settings, args.model or smollm_path())
        answerer = Answerer(settings, retriever, model)
        chain = SourcierChain(answerer)
        direct = [answerer.answer(q).text for q in QUESTIONS]
        via = [chain.invoke(q).text for q in QUESTIONS]
        assert direct == via, "the chain must answer exactly as the answerer does"
        repeat = max(1, args.repeat // 2)
        raw = per_question_ms(lambda q: answerer.answer(q), repeat)
        ours = per_question_ms(lambda q: chain.invoke(q), repeat)
        row(f"answer ({model.describe()}, {settings.llm.max_tokens} tokens max)", ours, raw)
    return 0


if __name__ == "__main__":
    sys.exit(main())
