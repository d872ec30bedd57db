"""sourcier as LangChain parts: a retriever over our hybrid (and reranked) search, and the answer chain as a
``Runnable``. LangChain is the interface here, not the engine: the chain keeps our packing, the model's own
chat template, the answerability check and the citation checks, and returns our :class:`~rag.answering.answer.Answer`.

    from rag.langchain import SourcierRetriever, SourcierChain
    retriever = SourcierRetriever.from_settings()          # the configured store, embedder and reranker
    docs = retriever.invoke("What was the capex in 2022?")  # Documents: text + source, page, span, scores
    chain = SourcierChain.from_settings()                  # + the configured model
    answer = chain.invoke({"question": "...", "history": [("earlier question", "earlier answer")]})

Only ``langchain_core`` is imported (a dependency already); nothing here loads a model until asked.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.messages import BaseMessage
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, get_callback_manager_for_config
from pydantic import ConfigDict

from rag.accounts import collections_of, readable_by
from rag.answering.answer import Answer, Answerer, Searcher
from rag.answering.packing import Passage, Turn
from rag.errors import SourcierError
from rag.search.scope import Scope, resolve_scope, within
from rag.settings import Settings

ChainInput = str | Mapping[str, Any]
"""A question, or ``{"question": ..., "history": [...], "sources": [...], "user": ...}``: history as (question,
answer) pairs, :class:`~rag.answering.packing.Turn`, ``{"question", "answer"}`` dicts or alternating human/AI messages;
sources as document or folder names (the answer comes only from them); user an account whose collections
the answer is held to."""


def passage_document(passage: Passage) -> Document:
    """A retrieved passage as a LangChain ``Document`` (its id is the chunk's id in the store)."""
    metadata = {
        "source": passage.source,
        "root": passage.root,
        "page": passage.page,
        "start": passage.start,
        "end": passage.end,
        "chunk_id": passage.chunk_id,
        "score": passage.score,
        "similarity": passage.similarity,
        "rerank_score": passage.rerank_score,
    }
    return Document(id=passage.chunk_id, page_content=passage.text, metadata=metadata)


def _scope_for(searcher: Searcher, names: Sequence[str], settings: Settings, user: str | None = None) -> Scope | None:
    """What a search of ``names`` (none: every document) may read, as account ``user`` when one is given."""
    readable = readable_by(settings.paths.store_dir, user)
    if not names:
        return readable
    documents = searcher.corpus.documents(readable)
    named = collections_of(settings.paths.store_dir, user)
    return within(resolve_scope(documents, list(names), settings.paths.store_dir, named), readable)


class SourcierRetriever(BaseRetriever):
    """Our search (vectors and keywords fused, reranked when a reranker is configured) as a LangChain retriever.

    ``k``: passages returned (default ``retrieval.k``); ``sources``: document or folder names the search is
    held to (default: every document); ``user``: an account (``sourcier users``) whose collections the
    search is held to (read again at every search: a grant revoked since applies at once).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    searcher: Any
    settings: Settings
    k: int | None = None
    sources: list[str] = []
    user: str | None = None

    @classmethod
    def from_settings(
        cls,
        settings: Settings | None = None,
        k: int | None = None,
        sources: Sequence[str] = (),
        user: str | None = None,
    ) -> SourcierRetriever:
        """A retriever over the configured store (refuses an empty one); loads the embedder and reranker."""
        from rag.search.retrieval import build_retriever

        settings = settings if settings is not None else Settings()
        return cls(searcher=build_retriever(settings), settings=settings, k=k, sources=list(sources), user=user)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        scope = _scope_for(self.searcher, self.sources, self.settings, self.user)
        passages = self.searcher.search(query, self.k or self.settings.retrieval.k, scope)
        return [passage_document(p) for p in passages]


def as_turns(history: Any) -> list[Turn]:
    """Earlier exchanges in any of the shapes :data:`ChainInput` accepts."""
    items = list(history or [])
    if items and all(isinstance(m, BaseMessage) for m in items):
        turns, question = [], None
        for message in items:
            if message.type == "human":
                question = message.text
            elif message.type == "ai" and question is not None:
                turns.append(Turn(question, message.text))
                question = None
        return turns
    turns = []
    for item in items:
        if isinstance(item, Turn):
            turns.append(item)
        elif isinstance(item, Mapping):
            turns.append(Turn(str(item["question"]), str(item["answer"])))
        elif isinstance(item, Sequence) and not isinstance(item, str) and len(item) == 2:
            turns.append(Turn(str(item[0]), str(item[1])))
        else:
            raise SourcierError(
                f"history: expected (question, answer) pairs, Turns, dicts or messages, got {type(item).__name__}"
            )
    return turns


class SourcierChain(Runnable[ChainInput, Answer]):
    """Question (and history) -> our :class:`~rag.answering.answer.Answer`, numbered sources and checked citations.

    ``invoke`` returns the Answer; ``stream`` yields the answer's text pieces as the model writes them, then the
    Answer as its last item (so a caller can print as it comes and still get the sources); ``batch`` answers
    several questions (one at a time on a local model, which has one context). Closing a stream early gives the
    model back at once. LangChain callbacks see the chain's start, end and errors.
    """

    name = "sourcier"

    def __init__(self, answerer: Answerer) -> None:
        self.answerer = answerer

    @classmethod
    def from_settings(cls, settings: Settings | None = None) -> SourcierChain:
        """The configured store and model (the model loads here: heavy, build once and share)."""
        from rag.answering.answer import build_answerer

        return cls(build_answerer(settings if settings is not None else Settings()))

    @property
    def InputType(self) -> type:  # noqa: N802 (LangChain's name)
        return dict

    @property
    def OutputType(self) -> type[Answer]:  # noqa: N802 (LangChain's name)
        return Answer

    def _arguments(self, input: ChainInput) -> tuple[str, list[Turn], Scope | None]:
        if isinstance(input, str):
            return input, [], None
        if "question" not in input:
            raise SourcierError(f"the chain's input needs a 'question' (got the keys {sorted(input)})")
        sources = input.get("sources") or []
        names = [sources] if isinstance(sources, str) else sources
        scope = _scope_for(self.answerer.retriever, names, self.answerer.settings, input.get("user"))
        return str(input["question"]), as_turns(input.get("history")), scope

    def invoke(self, input: ChainInput, config: RunnableConfig | None = None, **kwargs: Any) -> Answer:
        answer = None
        for item in self.stream(input, config, **kwargs):
            if isinstance(item, Answer):
                answer = item
        assert answer is not None
        return answer

    def stream(  # type: ignore[override]  (text pieces, then the Answer)
        self, input: ChainInput, config: RunnableConfig | None = None, **kwargs: Any
    ) -> Iterator[str | Answer]:
        config = ensure_config(config)
        run = get_callback_manager_for_config(config).on_chain_start(
            None, input if isinstance(input, Mapping) else {"question": input}, name=config.get("run_name") or self.name
        )
        try:
            question, history, scope = self._arguments(input)
            stream = self.answerer.stream(question, history, scope=scope)
            try:
                yield from stream
            finally:
                stream.close()
            answer = stream.answer
            assert answer is not None
        except GeneratorExit:  # the caller stopped reading: the model is already given back
            run.on_chain_end({"answer": None, "stopped": True})
            raise
        except BaseException as exc:
            run.on_chain_error(exc)
            raise
        run.on_chain_end({"answer": answer.text, "found": answer.found, "sources": len(answer.sources)})
        yield answer


def chroma_vectorstore(settings: Settings | None = None, embeddings: Any = None) -> Any:
    """``langchain_chroma.Chroma`` over the configured store (embedded or server), with our embedding model:
    for LangChain code that wants a vector store (MMR search, its own filters). It sees what we stored: the
    chunk text, and source/page/start/end in the metadata. Plain vector search: no keywords, no reranking, no
    scopes by folder; use :class:`SourcierRetriever` for ours. Read it only: ``python -m ingest`` is the writer.
    """
    from langchain_chroma import Chroma

    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.store import open_store

    settings = settings if settings is not None else Settings()
    info = getattr(embeddings, "info", None) or embedding_model_info(settings)
    store = open_store(settings, info, create=False)
    return Chroma(
        client=store.client,
        collection_name=store.collection.name,
        embedding_function=embeddings if embeddings is not None else load_embedder(settings, info),
        create_collection_if_not_exists=False,
    )
