"""sourcier from a LangChain user's side: our retriever in your own chain, on the same GGUF file.

    python examples/langchain_chain.py "How long did the storage outage last?"

Three ways in, all on the configured store (``python -m ingest data`` first) and fully offline:
1. your chain: ``SourcierRetriever`` (our hybrid, reranked search) -> your prompt -> langchain-community's
   ``ChatLlamaCpp`` on the GGUF sourcier uses -> a string;
2. langchain-chroma's ``Chroma`` over our store, for plain vector search (``chroma_vectorstore``);
3. our own chain as a ``Runnable`` (``SourcierChain``): packing, the GGUF's template, checked citations.

Needs ``pip install -e '.[langchain]'`` (langchain-community), which ``bash setup.sh`` installs.
"""

from __future__ import annotations

import sys
import warnings

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

import rag  # noqa: F401  (forces the offline switches before anything else loads)
from rag.langchain import SourcierChain, SourcierRetriever, chroma_vectorstore
from rag.models.gguf import resolve_model_path
from rag.settings import Settings

PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer from the passages only, in one sentence. Passages:\n\n{context}"),
        ("user", "{question}"),
    ]
)


def place(meta: dict) -> str:
    """ "report.pdf, p. 3" (pages count from 1; 0 is a document without pages: text, HTML, Word)."""
    return f"{meta['source']}, p. {meta['page']}" if meta.get("page") else meta["source"]


def your_chain(settings: Settings):
    """A LangChain chain of your own, with our retriever and ChatLlamaCpp on sourcier's GGUF."""
    with warnings.catch_warnings():  # langchain-community warns on import that it is being sunset
        warnings.simplefilter("ignore", DeprecationWarning)
        from langchain_community.chat_models import ChatLlamaCpp

    model = ChatLlamaCpp(
        model_path=str(resolve_model_path(settings)),
        n_ctx=settings.llm.n_ctx,
        n_threads=settings.llm.n_threads,
        temperature=0.0,
        max_tokens=settings.llm.max_tokens,
        verbose=False,
    )
    retriever = SourcierRetriever.from_settings(settings, k=3)

    def passages(docs) -> str:
        return "\n\n".join(f"[{place(d.metadata)}] {d.page_content}" for d in docs)

    return {"context": retriever | passages, "question": RunnablePassthrough()} | PROMPT | model | StrOutputParser()


def main(argv: list[str] | None = None) -> int:
    question = " ".join(argv if argv is not None else sys.argv[1:]) or "How long did the storage outage last?"
    settings = Settings()

    print("1. Your chain (SourcierRetriever | prompt | ChatLlamaCpp):")
    print("  ", your_chain(settings).invoke(question).strip())

    print("2. langchain-chroma over our store (plain vector search):")
    for doc in chroma_vectorstore(settings).similarity_search(question, k=2):
        print(f"   {place(doc.metadata)}: {doc.page_content[:80]!r}")

    print("3. sourcier's own chain as a Runnable:")
    answer = SourcierChain.from_settings(settings).invoke(question)
    print("  ", answer.text)
    for source in answer.cited_sources:
        print(f"   [{source.number}] {place(vars(source.passage))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
