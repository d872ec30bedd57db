"""sourcier as LangChain parts, over a real Chroma store with the fake embedder: the retriever returns our
passages as Documents, the chain returns our Answer (sources, checked citations) through invoke, stream and
batch, and langchain-chroma's Chroma reads our store."""

from __future__ import annotations

import pytest
from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import AIMessage, HumanMessage
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda

from rag.answering.answer import Answer, Answerer
from rag.answering.packing import Turn
from rag.errors import SourcierError
from rag.langchain import SourcierChain, SourcierRetriever, as_turns, chroma_vectorstore
from rag.search.retrieval import Retriever
from rag.search.scope import ScopeError
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor

QUESTION = "How long did the storage outage last? outage minutes"


@pytest.fixture
def retriever(settings, corpus):
    store = fake_ingestor(settings)[0]
    assert store.run([corpus]).ok
    settings.retrieval.min_similarity = 0.0
    return Retriever(fake_ingestor(settings)[0].store, FakeEmbedder(), settings)


def chain_with(settings, retriever, *replies: str) -> tuple[SourcierChain, FakeLLM]:
    llm = FakeLLM(list(replies))
    return SourcierChain(Answerer(settings, retriever, llm)), llm


def test_the_retriever_returns_our_passages_as_documents_with_their_place(settings, retriever):
    lc = SourcierRetriever(searcher=retriever, settings=settings, k=3)
    docs = lc.invoke(QUESTION)
    passages = retriever.search(QUESTION, 3)
    assert [d.id for d in docs] == [p.chunk_id for p in passages] and len(docs) == 3
    first, passage = docs[0], passages[0]
    assert first.page_content == passage.text
    assert first.metadata["source"] == passage.source and first.metadata["page"] == passage.page
    assert (first.metadata["start"], first.metadata["end"]) == (passage.start, passage.end)
    assert first.metadata["score"] == passage.score and "rerank_score" in first.metadata


def test_the_retriever_holds_a_search_to_the_chosen_documents(settings, retriever):
    everything = {
        d.metadata["source"] for d in SourcierRetriever(searcher=retriever, settings=settings, k=8).invoke("the")
    }
    assert len(everything) > 1
    chosen = sorted(everything)[0]
    held = SourcierRetriever(searcher=retriever, settings=settings, k=8, sources=[chosen]).invoke("the")
    assert held and {d.metadata["source"] for d in held} == {chosen}
    with pytest.raises(ScopeError, match="no document or folder"):
        SourcierRetriever(searcher=retriever, settings=settings, sources=["nowhere.pdf"]).invoke("the")


def test_the_retriever_plugs_into_a_users_own_chain(settings, retriever):
    lc = SourcierRetriever(searcher=retriever, settings=settings, k=2)
    prompt = ChatPromptTemplate.from_messages([("user", "Context:\n{context}\n\nQuestion: {question}")])
    chain = {
        "context": lc | RunnableLambda(lambda docs: "\n\n".join(d.page_content for d in docs)),
        "question": RunnableLambda(lambda q: q),
    } | prompt
    rendered = chain.invoke(QUESTION).to_messages()[0].content
    assert "47 minutes" in rendered and rendered.endswith(QUESTION)


def test_the_chain_returns_our_answer_with_its_sources_and_checked_citations(settings, retriever):
    chain, llm = chain_with(settings, retriever, "The outage lasted 47 minutes [1].")
    answer = chain.invoke(QUESTION)
    assert isinstance(answer, Answer) and answer.found and answer.text.startswith("The outage lasted 47 minutes")
    cited = answer.cited_sources
    assert [s.number for s in cited] == [1] and cited[0].supported is True
    assert llm.prompts[0].text.startswith("<|system|>")  # our packing and the model's own template
    assert "[1] (" in llm.prompts[0].text  # passages numbered as our prompt numbers them


def test_the_chain_streams_pieces_then_the_answer(settings, retriever):
    chain, _ = chain_with(settings, retriever, "The outage lasted 47 minutes [1].")
    items = list(chain.stream({"question": QUESTION}))
    *pieces, answer = items
    assert len(pieces) > 3 and all(isinstance(p, str) for p in pieces)
    assert isinstance(answer, Answer) and "".join(pieces).startswith("The outage lasted 47 minutes")


def test_a_stream_left_early_gives_the_model_back(settings, retriever):
    chain, llm = chain_with(settings, retriever, "The outage lasted 47 minutes [1].", "Yes [1].")
    stream = chain.stream(QUESTION)
    next(stream)
    stream.close()
    assert not llm.activity.state().busy
    assert chain.invoke(QUESTION).text.startswith("Yes")  # the next question is not kept waiting


def test_history_in_every_shape_reaches_the_prompt(settings, retriever):
    earlier = ("What broke in March?", "The storage cluster [1].")
    shapes = [
        [earlier],
        [Turn(*earlier)],
        [{"question": earlier[0], "answer": earlier[1]}],
        [HumanMessage(earlier[0]), AIMessage(earlier[1])],
    ]
    assert all(as_turns(shape) == [Turn(*earlier)] for shape in shapes)
    chain, llm = chain_with(settings, retriever, "It lasted 47 minutes [1].")
    chain.invoke({"question": "How long did it last?", "history": shapes[3]})
    assert "What broke in March?" in llm.prompts[0].text
    with pytest.raises(SourcierError, match="history: expected"):
        as_turns([42])


def test_batch_answers_each_question(settings, retriever):
    chain, _ = chain_with(settings, retriever, "First [1].", "Second [1].")
    answers = chain.batch([QUESTION, {"question": QUESTION}], config={"max_concurrency": 1})
    assert [a.text for a in answers] == ["First [1].", "Second [1]."]


def test_a_question_held_to_documents_and_a_bad_input(settings, retriever):
    chain, llm = chain_with(settings, retriever, "It lasted 47 minutes [1].")
    source = retriever.search(QUESTION, 1)[0].source
    answer = chain.invoke({"question": QUESTION, "sources": source})
    assert {s.passage.source for s in answer.sources} == {source}
    with pytest.raises(SourcierError, match="needs a 'question'"):
        chain.invoke({"query": QUESTION})


def test_callbacks_see_the_chain_start_and_end(settings, retriever):
    events = []

    class Recorder(BaseCallbackHandler):
        def on_chain_start(self, serialized, inputs, **kwargs):
            events.append(("start", kwargs.get("name"), inputs["question"]))

        def on_chain_end(self, outputs, **kwargs):
            events.append(("end", outputs["found"]))

    chain, _ = chain_with(settings, retriever, "It lasted 47 minutes [1].")
    chain.invoke(QUESTION, config={"callbacks": [Recorder()]})
    assert events == [("start", "sourcier", QUESTION), ("end", True)]


def test_langchain_chroma_reads_our_store(settings, retriever):
    vectorstore = chroma_vectorstore(settings, embeddings=FakeEmbedder())
    docs = vectorstore.similarity_search(QUESTION, k=3)
    assert len(docs) == 3 and all({"source", "page", "start", "end"} <= set(d.metadata) for d in docs)
    nearest = retriever.store.nearest(FakeEmbedder().embed_query(QUESTION), 3)
    assert [d.id for d in docs] == [h.chunk_id for h in nearest]
