"""Find the passages for a question: vector search and BM25 keyword search, fused by reciprocal rank,
then reordered by a cross-encoder.

Both searches look at the same chunks of the Chroma store and can be switched off in the settings
(``retrieval.vector``, ``retrieval.keyword``) for comparison. The keyword index is the store's persistent
one (``rag.search.keyword``), or one built in memory from the store's chunks when first needed. With a reranker
(``retrieval.reranker``, see ``rag.search.rerank``), the fusion proposes ``retrieval.candidates_for_rerank``
passages, all scored in one batch, and the best ``k`` are returned, best first.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from rag.answering.packing import Passage
from rag.errors import SettingsError, StoreError
from rag.models.embedding import Embedder, EmbeddingModelInfo, multilingual_embedder
from rag.search.cards import CardStore, card_store
from rag.search.corpus import Corpus
from rag.search.keyword import KeywordIndex, MemoryKeywordIndex, SqliteKeywordIndex
from rag.search.routing import Route, route
from rag.search.scope import Scope
from rag.search.store import (
    Hit,
    Store,
    claim_system,
    drop_cached_stores,
    open_store,
    release_system,
    store_system,
)
from rag.search.writer_lock import ingest_in_this_process
from rag.settings import Settings
from rag.text import detect_language, search_text

if TYPE_CHECKING:
    from rag.search.rerank import Reranker


# The weight, in the fusion, of a question's own wording when it has translations and no chunk of the store is
# in its language (its names and numbers may still match).
ABSENT_LANGUAGE_WEIGHT = 0.0
# How much more relevant (the reranker's 0-1 scale) a passage of a document the question names only by a period
# or kind is taken to be (rag.search.routing's soft routing): enough to put it ahead of its near-identical twin.
NAMED_BONUS = 0.1
# Two passages whose words (figures and years aside) overlap this much are copies of one passage in two
# versions of a document (Jaccard of their word sets).
SAME_WORDING = 0.8
# A retired copy of the store is released this long after it was replaced at the earliest.
RELEASE_GRACE_S = 30.0
# A long-running reader searches up to this many chunks written (or removed) since it loaded its copy of
# Chroma's vector index beside that copy (exactly: about 2 ms at 20,000); past it, it opens the store again.
FRESH_MAX = 20_000


class FreshVectors:
    """The writes made to the store since a reader's copy of Chroma's vector index was loaded, read from the
    keyword index's log of writes (``SqliteKeywordIndex.recent_since``): the new chunks' vectors are searched
    exactly beside that copy, and the removed chunks left out of its hits. A reader thus sees another
    process's writes at once, instead of loading the whole vector index again (seconds at a million chunks,
    with every other thread of the process held meanwhile: Chroma keeps Python's lock while it loads)."""

    def __init__(self, index: SqliteKeywordIndex) -> None:
        self._index = index
        self.seq = index.last_write()  # the last write read
        # Replaced whole by catch_up (under the reader's lock), read whole by merge (searches, no lock).
        self._state: tuple[dict[str, np.ndarray], frozenset[str], list[str], np.ndarray | None] = (
            {},
            frozenset(),
            [],
            None,
        )

    @property
    def vectors(self) -> dict[str, np.ndarray]:
        return self._state[0]

    @property
    def removed(self) -> frozenset[str]:
        return self._state[1]

    def __len__(self) -> int:
        return len(self.vectors) + len(self.removed)

    def catch_up(self) -> bool:
        """Read the writes logged since the last one read. False when they cannot all be had (the log no
        longer holds the oldest) or would be too many to search beside the copy (``FRESH_MAX``): the store
        must then be opened again."""
        writes = self._index.recent_since(self.seq)
        if writes is None:
            return False
        if writes:
            vectors, removed = dict(self.vectors), set(self.removed)
            for _, cid, blob in writes:
                if blob is None:
                    vectors.pop(cid, None)
                    removed.add(cid)
                else:
                    vector = np.frombuffer(blob, dtype=np.float32)
                    vectors[cid] = vector / (np.linalg.norm(vector) or 1.0)
                    removed.discard(cid)
            ids = list(vectors)
            matrix = np.stack([vectors[cid] for cid in ids]) if ids else None
            self._state = (vectors, frozenset(removed), ids, matrix)
            self.seq = writes[-1][0]
        return len(self) <= FRESH_MAX

    def merge(
        self, query: Sequence[float], hits: list[Hit], n: int, within: Collection[str] | None = None
    ) -> list[Hit]:
        """The ``n`` best of the copy's ``hits`` and the fresh chunks (those ``within`` when it is given), by
        cosine similarity; removed chunks left out."""
        _, removed, ids, matrix = self._state
        if matrix is None and not removed:
            return hits
        scores = {h.chunk_id: h.score for h in hits if h.chunk_id not in removed}
        if matrix is not None:
            q = np.asarray(query, dtype=np.float32)
            similarities = matrix @ (q / (np.linalg.norm(q) or 1.0))
            for cid, similarity in zip(ids, similarities.tolist(), strict=True):
                if within is None or cid in within:
                    scores[cid] = similarity
        best = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:n]
        return [Hit(cid, rank, score) for rank, (cid, score) in enumerate(best)]


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[Hit]], k: int = 60, weights: Sequence[float] | None = None
) -> list[tuple[str, float]]:
    """Chunk ids by fused score: the sum over rankings of weight / (k + rank + 1)."""
    fused: dict[str, float] = {}
    for ranking, weight in zip(rankings, weights or [1.0] * len(rankings), strict=True):
        for hit in ranking:
            fused[hit.chunk_id] = fused.get(hit.chunk_id, 0.0) + weight / (k + hit.rank + 1)
    return sorted(fused.items(), key=lambda kv: (-kv[1], kv[0]))


class Retriever:
    """Hybrid search over the store; returns ranked passages with their provenance."""

    def __init__(
        self,
        store: Store,
        embedder: Embedder,
        settings: Settings,
        reranker: Reranker | None = None,
        cards: CardStore | None = None,
    ) -> None:
        r = settings.retrieval
        if not (r.vector or r.keyword):
            raise SettingsError("retrieval.vector and retrieval.keyword are both off: nothing can be searched")
        self.store = store
        self.embedder = embedder
        self.settings = settings
        self.reranker = reranker
        self._keyword: KeywordIndex | None = None
        self.fresh: FreshVectors | None = None  # writes made since the store was opened (a LiveRetriever's)
        self._cards = cards  # the documents' cards (rag.search.cards), opened when first needed

    @property
    def corpus(self) -> Corpus:
        """What this retriever searches, for reading documents and chunks (held to a scope)."""
        return self.store

    @property
    def keyword_index(self) -> KeywordIndex:
        """The store's persistent index (filled first if it is behind the store, once: a store written before
        the index existed; its terms cut again if an earlier version wrote them), else an in-memory one built
        from every chunk."""
        if self._keyword is None:
            persistent = self.store.keywords
            if persistent is not None:
                if persistent.count() < self.store.count() or persistent.outdated():
                    self.store.reconcile_keywords()
                self.store.describe_unknown_chunks()  # a scope is applied through each chunk's document
                self._keyword = persistent
            else:
                ids, texts = [], []
                for chunk_id, text in self.store.iter_search_texts():
                    ids.append(chunk_id)
                    texts.append(text)
                self._keyword = MemoryKeywordIndex(ids, texts)
        return self._keyword

    def search(
        self,
        query: str,
        k: int | None = None,
        scope: Scope | None = None,
        translations: Mapping[str, str] | None = None,
        on_route: Callable[[Route], None] | None = None,
    ) -> list[Passage]:
        """The ``k`` best passages for ``query`` (``retrieval.k`` by default), best first; only from the
        documents of ``scope`` when one is given. With ``translations`` (language -> the query in that
        language: ``rag.answering.crosslingual``), each is searched too, every ranking fused, and each passage reranked
        against the query in its own language; the query as asked is left out of the search when no chunk is
        in its language (its rankings would only push the translation's down). When the question names
        documents (``rag.search.routing``: an organisation, a year, a kind), the search runs within them or searches
        them first; ``on_route`` is then told which."""
        k = k or self.settings.retrieval.k
        queries = [*self._as_asked(query, translations), *((t, 1.0) for t in (translations or {}).values())]
        routed = self.route(query, scope)
        if routed is None:
            return self._ranked(query, queries, k, scope, translations)
        passages = self._routed(query, queries, k, scope, translations, routed)
        if on_route is not None:
            on_route(routed)
        return passages

    def _routed(
        self,
        query: str,
        queries: Sequence[tuple[str, float]],
        k: int,
        scope: Scope | None,
        translations: Mapping[str, str] | None,
        routed: Route,
    ) -> list[Passage]:
        """The passages of a question that names documents: searched only within them (``routed.hard``; every
        document, marked ``widened``, when that finds nothing), or searched first."""
        named = Scope(documents=routed.keys).narrowed(scope)
        if routed.hard:
            passages = self._ranked(query, queries, k, named, translations)
            if passages:
                return passages
            routed.widened = True
            return self._ranked(query, queries, k, scope, translations)
        n = max(k, self.settings.retrieval.candidates_for_rerank if self.reranker else k)
        vectors: dict[tuple[bool, str], list[float]] = {}  # each wording embedded once for both searches
        across = bool(translations)
        fused = _fused_passages(
            [self.hybrid(queries, n, named, vectors, across), self.hybrid(queries, n, scope, vectors, across)],
            n,
            self.settings.retrieval.rrf_k,
        )
        if self.reranker is None:
            return fused[:k]
        return _favoured(rerank(self.reranker, query, fused, translations), routed.keys)[:k]

    def _ranked(
        self,
        query: str,
        queries: Sequence[tuple[str, float]],
        k: int,
        scope: Scope | None,
        translations: Mapping[str, str] | None,
    ) -> list[Passage]:
        across = bool(translations)  # asked in another language than chunks it seeks: their multilingual vectors
        if self.reranker is None:
            return self.hybrid(queries, k, scope, across=across)
        candidates = self.hybrid(queries, max(k, self.settings.retrieval.candidates_for_rerank), scope, across=across)
        return rerank(self.reranker, query, candidates, translations)[:k]

    @property
    def cards(self) -> CardStore:
        """The cards of the store's documents (``rag.search.cards``)."""
        if self._cards is None:
            self._cards = card_store(self.settings.paths.store_dir)
        return self._cards

    def route(self, query: str, scope: Scope | None = None) -> Route | None:
        """The documents ``query`` names among those ``scope`` admits (None: none, or routing is off, or the
        question's documents were chosen: ``--in``)."""
        if not self.settings.retrieval.route_documents or (scope is not None and scope.documents is not None):
            return None
        return route(query, self.cards.cards(self.corpus, scope))

    def _as_asked(self, query: str, translations: Mapping[str, str] | None) -> list[tuple[str, float]]:
        """The query as asked with its weight in the fusion: ``ABSENT_LANGUAGE_WEIGHT`` when it has translations
        and the store holds no chunk in its language, else 1."""
        if not translations:
            return [(query, 1.0)]
        languages = self.store.languages()
        weight = 1.0 if languages is None or detect_language(query) in languages else ABSENT_LANGUAGE_WEIGHT
        return [(query, weight)] if weight > 0 else []

    def hybrid(
        self,
        query: str | Sequence[tuple[str, float]],
        k: int,
        scope: Scope | None = None,
        vectors: dict[tuple[bool, str], list[float]] | None = None,
        across: bool = False,
    ) -> list[Passage]:
        """The ``k`` best passages of the fused vector and keyword rankings (both held to ``scope``) of the
        query, or of several wordings of it, each (wording, weight in the fusion). ``vectors``: the wordings
        already embedded by an earlier search of the same question (filled in for the next one). ``across``: a
        question asked in another language than chunks it seeks (searched with translations); each wording's
        ranking by the chunks' multilingual vectors (``retrieval.crosslingual_vectors``) is fused in too. The
        one's own language searches without them: they found less there (COVID-QA in English, recall@5 0.657 ->
        0.613, docs/measurements.md)."""
        r = self.settings.retrieval
        rankings, weights = [], []
        similarity: dict[str, float] = {}
        if scope is not None and scope.empty:
            return []
        keywords = self.keyword_index if r.keyword else None
        # The chunks the scope admits, where a search cannot apply it itself: an in-memory keyword index, and
        # the chunks written since this copy of the vector index was loaded.
        within = None
        if scope is not None and isinstance(keywords, MemoryKeywordIndex):
            within = self.store.ids_in(scope)
        fresh_within = None
        if scope is not None and self.fresh is not None and self.fresh.vectors:
            fresh_within = within if within is not None else self.store.ids_in(scope, among=self.fresh.vectors)
        for asked, weight in [(query, 1.0)] if isinstance(query, str) else query:
            if r.vector:
                query_vector = self._query_vector(asked, vectors)
                vector_hits = self.store.nearest(query_vector, r.candidates, scope)
                if self.fresh is not None:
                    vector_hits = self.fresh.merge(query_vector, vector_hits, r.candidates, fresh_within)
                for h in vector_hits:
                    similarity[h.chunk_id] = max(h.score, similarity.get(h.chunk_id, h.score))
                rankings.append(vector_hits)
                weights.append(r.vector_weight * weight)
                if across and self.searches_crosslingual:
                    multilingual = self._query_vector(asked, vectors, crosslingual=True)
                    rankings.append(self.store.nearest(multilingual, r.candidates, scope, crosslingual=True))
                    weights.append(r.vector_weight * weight)
            if keywords is not None:
                rankings.append(self.keyword_hits(asked, r.candidates, scope, within))
                weights.append(r.keyword_weight * weight)
        return self.passages(reciprocal_rank_fusion(rankings, r.rrf_k, weights), k, scope, similarity)

    def _query_vector(
        self, asked: str, vectors: dict[tuple[bool, str], list[float]] | None, crosslingual: bool = False
    ) -> list[float]:
        """``asked`` embedded (by the multilingual embedder when ``crosslingual``), kept in ``vectors`` for the
        question's next search (a question that names documents is searched twice)."""
        key = (crosslingual, asked)
        found = vectors.get(key) if vectors is not None else None
        if found is None:
            embedder = multilingual_embedder(self.settings.embedding.threads) if crosslingual else self.embedder
            found = embedder.embed_query(asked)
            if vectors is not None:
                vectors[key] = found
        return found

    @property
    def searches_crosslingual(self) -> bool:
        """Whether a question asked across languages searches the chunks' multilingual vectors too."""
        return self.settings.retrieval.crosslingual_vectors and getattr(self.store, "crosslingual", None) is not None

    def keyword_hits(self, query: str, n: int, scope: Scope | None, within: Collection[str] | None) -> list[Hit]:
        """The keyword index's ``n`` best chunks for ``query``: held to ``scope`` by the SQLite index itself, to
        the chunk ids ``within`` (those ``scope`` admits) by the in-memory one."""
        keywords = self.keyword_index
        if isinstance(keywords, SqliteKeywordIndex):
            found = keywords.search(query, n, scope=scope)
        else:
            found = keywords.search(query, n, within)
        return [Hit(cid, rank, score) for rank, (cid, score) in enumerate(found)]

    def passages(
        self, fused: Sequence[tuple[str, float]], k: int, scope: Scope | None, similarity: Mapping[str, float]
    ) -> list[Passage]:
        """The first ``k`` passages of a fused ranking (chunk id, score), read from the store within ``scope``,
        each with its vector ``similarity`` when one was found."""
        passages: list[Passage] = []
        start = 0
        while len(passages) < k and start < len(fused):
            # A chunk an ingest in another process deleted after the search found it is skipped (and the
            # next candidates fill its place), never an error.
            batch = fused[start : start + k - len(passages)]
            start += len(batch)
            records = self.store.records([cid for cid, _ in batch], scope)
            for cid, score in batch:
                if cid in records:
                    doc, meta = records[cid]
                    passages.append(_passage(cid, doc, meta, score, similarity.get(cid)))
        return passages


class LiveRetriever:
    """A retriever for long-running readers (the page, the API) that follows the store as it changes.

    Chroma keeps one in-memory vector index per store and process: chunks written by another process (a
    ``python -m ingest`` beside the page) stay invisible to it until the store is opened again, which loads
    the whole index (seconds at a million chunks). Before each search this checks the store's change
    marker; when it moved, the writes logged since are read (:class:`FreshVectors`: new chunks searched
    beside the copy, removed ones left out; the persistent keyword index needs nothing). Only when they
    are too many, cannot be had (a Chroma server, no log) or the log lost some, is the store opened again
    (an in-memory keyword index is then rebuilt) and the copy left behind released once idle. A search that
    fails on a store changed under it is retried once on a fresh copy.
    """

    def __init__(
        self, settings: Settings, embedder: Embedder, model: EmbeddingModelInfo, reranker: Reranker | None = None
    ) -> None:
        self.settings = settings
        self.embedder = embedder
        self.model = model
        self.reranker = reranker
        self._lock = threading.Lock()
        self._in_use: dict[int, int] = {}  # id(retriever) -> searches running on it
        self._retired: list[tuple[Retriever, float]] = []  # copies replaced by a fresh one, and since when
        self.cards = card_store(settings.paths.store_dir)  # shared by every copy
        self._retriever = self._open(drop_cache=False)

    @property
    def store(self) -> Store:
        return self._current().store

    @property
    def corpus(self) -> Corpus:
        """The store as it is now (a fresh copy when another process changed it)."""
        return self._current().store

    def search(
        self,
        query: str,
        k: int | None = None,
        scope: Scope | None = None,
        translations: Mapping[str, str] | None = None,
        on_route: Callable[[Route], None] | None = None,
    ) -> list[Passage]:
        for attempt in (1, 2):
            retriever = self._enter(reopen=attempt == 2)
            try:
                return retriever.search(query, k, scope, translations, on_route)
            except StoreError:
                if attempt == 2:
                    raise
            finally:
                self._leave(retriever)
        raise AssertionError("unreachable")

    def _current(self) -> Retriever:
        with self._lock:
            current, idle = self._followed(reopen=False), self._idle_retired()
        self._release(idle)
        return current

    def _enter(self, reopen: bool) -> Retriever:
        """The current retriever (a fresh one if the store changed), counted as in use until ``_leave``."""
        with self._lock:
            retriever = self._followed(reopen)
            self._in_use[id(retriever)] = self._in_use.get(id(retriever), 0) + 1
            return retriever

    def _leave(self, retriever: Retriever) -> None:
        with self._lock:
            left = self._in_use[id(retriever)] - 1
            if left:
                self._in_use[id(retriever)] = left
            else:
                del self._in_use[id(retriever)]
            idle = self._idle_retired()
        self._release(idle)

    def _followed(self, reopen: bool) -> Retriever:
        """The current retriever, on a fresh copy of the store when it changed (or ``reopen``); the old copy is
        released once idle (see ``_idle_retired``). Under the lock."""
        version = self._retriever.store.version()
        if not reopen and version == self._version:
            return self._retriever
        fresh = self._retriever.fresh
        if not reopen and fresh is not None and fresh.catch_up():
            self._version = version
            return self._retriever
        old, self._retriever = self._retriever, self._open(drop_cache=True)
        self._retired.append((old, time.monotonic()))
        return self._retriever

    def _idle_retired(self) -> list[Retriever]:
        """Retired copies (taken out of the list) that no search of this reader uses, that no ingest of this
        process may be using (it holds the ingest lock while it runs), and that were retired at least
        ``RELEASE_GRACE_S`` ago (for short reads made outside ``search``, such as the page's document list)."""
        if not self._retired:
            return []
        now = time.monotonic()
        ingesting = ingest_in_this_process(self.settings.paths.store_dir)
        idle, keep = [], []
        for retriever, retired_at in self._retired:
            if not ingesting and id(retriever) not in self._in_use and now - retired_at >= RELEASE_GRACE_S:
                idle.append(retriever)
            else:
                keep.append((retriever, retired_at))
        self._retired = keep
        return idle

    @staticmethod
    def _release(retired: list[Retriever]) -> None:
        """Stop the Chroma systems of these copies (their memory back to the OS); outside the lock."""
        for retriever in retired:
            release_system(store_system(retriever.store))

    def _open(self, drop_cache: bool) -> Retriever:
        if drop_cache and self.settings.store.mode == "embedded":
            drop_cached_stores(self.settings.paths.store_dir)
        store = open_store(self.settings, self.model)
        claim_system(store_system(store))
        self._version = store.version()
        retriever = Retriever(store, self.embedder, self.settings, self.reranker, self.cards)
        if store.mode == "embedded" and store.keywords is not None:
            # Writes logged from here on may also be in this copy (its vectors load at its first search):
            # searching them twice changes nothing.
            retriever.fresh = FreshVectors(store.keywords)
        return retriever


def _favoured(passages: Sequence[Passage], named: Collection[tuple[str, str]]) -> list[Passage]:
    """Reranked passages with those of the ``named`` documents ahead of others about as relevant (within
    ``NAMED_BONUS`` of the reranker's relevance), and without the other documents' copies of a named one's
    passage (the same words, other figures): the same paragraph of this year's and last year's report scores
    alike, the question named this year's, and last year's figure beside it would only mislead the model."""

    def key(p: Passage) -> float:
        return -((p.rerank_score or 0.0) + (NAMED_BONUS if (p.root, p.source) in named else 0.0))

    ranked = sorted(passages, key=key)
    kept = [_wording(p.text) for p in ranked if (p.root, p.source) in named]
    return [
        p for p in ranked if (p.root, p.source) in named or not any(_same_wording(_wording(p.text), w) for w in kept)
    ]


def _wording(text: str) -> frozenset[str]:
    """A passage's words without its figures and years, folded."""
    return frozenset(w for w in re.findall(r"[^\W\d_]+", text.lower()) if len(w) > 1)


def _same_wording(a: frozenset[str], b: frozenset[str]) -> bool:
    """Whether two passages say the same words (Jaccard at least ``SAME_WORDING``), figures aside."""
    return bool(a and b) and len(a & b) / len(a | b) >= SAME_WORDING


def _fused_passages(lists: Sequence[Sequence[Passage]], n: int, rrf_k: int) -> list[Passage]:
    """The best ``n`` of several ranked passage lists, by reciprocal rank fusion."""
    by_id = {p.chunk_id: p for ranked in lists for p in ranked}
    rankings = [[Hit(p.chunk_id, rank, p.score) for rank, p in enumerate(ranked)] for ranked in lists]
    return [replace(by_id[cid], score=round(score, 6)) for cid, score in reciprocal_rank_fusion(rankings, rrf_k)[:n]]


def rerank(
    reranker: Reranker, query: str, passages: Sequence[Passage], translations: Mapping[str, str] | None = None
) -> list[Passage]:
    """``passages`` ordered by the reranker's relevance, best first (ties keep the fused order), each carrying
    its ``rerank_score``. With ``translations`` (language -> query), a passage is scored against the query in
    its own language (the original one when there is none)."""
    asked = [(translations or {}).get(p.language or detect_language(p.text), query) for p in passages]
    scores: list[float] = [0.0] * len(passages)
    for wording in dict.fromkeys(asked):
        chosen = [i for i, a in enumerate(asked) if a == wording]
        found = reranker.score(wording, [search_text(passages[i].text, passages[i].context) for i in chosen])
        for i, score in zip(chosen, found, strict=True):
            scores[i] = score
    scored = [replace(p, rerank_score=round(s, 6)) for p, s in zip(passages, scores, strict=True)]
    return sorted(scored, key=lambda p: -(p.rerank_score or 0.0))


def _passage(chunk_id: str, text: str, meta: dict[str, Any], score: float, similarity: float | None) -> Passage:
    return Passage(
        chunk_id=chunk_id,
        text=text,
        source=str(meta.get("source", "")),
        page=int(meta.get("page", 0)),
        start=int(meta.get("start", 0)),
        end=int(meta.get("end", 0)),
        score=round(score, 6),
        root=str(meta.get("root", "")),
        similarity=similarity,
        context=str(meta.get("context", "")),
        language=str(meta.get("language", "")),
    )


def build_retriever(settings: Settings) -> Retriever:
    """The configured store and embedder behind a retriever; refuses an empty store (cheap, before any model)."""
    from rag.models.embedding import embedding_model_info, load_embedder
    from rag.search.rerank import load_reranker

    info = embedding_model_info(settings)
    store = open_existing_store(settings, info)
    return Retriever(store, load_embedder(settings, info), settings, load_reranker(settings))


def open_existing_store(settings: Settings, info: EmbeddingModelInfo | None = None) -> Store:
    """The configured store, refused with what to do when there is none or it is empty (reading a store must
    not create one, issue 38); ``info``: the embedding model it must have been built with (None: any)."""
    from rag.search.store import store_class

    if not store_class(settings).exists(settings):
        raise StoreError(
            f"no store at {store_class(settings).where(settings)}: run python -m ingest first (e.g. python -m "
            "ingest data), or point --store / paths.store_dir at one"
        )
    store = open_store(settings, info, create=info is not None)
    if store.count() == 0:
        raise StoreError(
            f"the store is empty ({store.describe()}): run python -m ingest first (e.g. python -m ingest data)"
        )
    return store
