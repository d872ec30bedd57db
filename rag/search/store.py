"""The Chroma store of chunks: open it from the settings, read what it holds, write batches.

The collection never embeds anything itself (Chroma's default embedding function downloads a model
from the internet): vectors always come from our embedder. Each chunk's metadata says where it came
from (see ``ingest.chunking.chunk_metadata``); documents are grouped by ``root`` + ``source``.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from rag.errors import StoreError, StoreMismatchError, store_error_hint
from rag.models.embedding import USEM3_NAME, EmbeddingModelInfo, multilingual_available, multilingual_embedder
from rag.search.chroma_internals import bound_requests, client_system, forget_cached_store
from rag.search.corpus import CHUNK_ID, DocumentInfo, Record, documents_in
from rag.search.keyword import INDEX_FILE, SqliteKeywordIndex, shared_index
from rag.search.scope import Scope, chunk_collections
from rag.settings import Settings
from rag.text import LANGUAGES, search_text, text_language

READ_PAGE = 5000
CHANGE_MARKER = ".sourcier-changed"  # rewritten after every write, so readers in other processes notice
CHANGED_KEY = "sourcier_changed"  # the same marker, in the collection's metadata on a Chroma server
# A scope holding at least this share of the chunks is searched without Chroma's filter, for OVERFETCH times
# the hits its share should hold (at most OVERFETCH_MAX), and the others dropped (Store.nearest, measured in
# benchmarks/access_bench.py).
OVERFETCH_MIN_SHARE = 0.05
OVERFETCH = 1.5
OVERFETCH_MAX = 1000
# The second collection, beside the chunks', of their multilingual (usem3) vectors: retrieval.crosslingual_vectors
CROSSLINGUAL_SUFFIX = "-usem3"


@dataclass
class StoredDocument:
    """What the store holds for one source file: its chunk ids and the versions they belong to."""

    source: str
    ids: list[str] = field(default_factory=list)
    file_hashes: set[str] = field(default_factory=set)
    pipelines: set[str] = field(default_factory=set)
    expected_chunks: set[int] = field(default_factory=set)

    def is_complete(self, file_hash: str, pipeline: str) -> bool:
        """True when the store holds exactly one full copy of this version of the file."""
        return (
            self.file_hashes == {file_hash}
            and self.pipelines == {pipeline}
            and self.expected_chunks == {len(self.ids)}
            and len(set(self.ids)) == len(self.ids)
        )


@dataclass(frozen=True)
class Hit:
    """A chunk found by one search, with its rank in that search (0 = best) and that search's score."""

    chunk_id: str
    rank: int
    score: float


class Store(ABC):
    """A Chroma collection of chunks with the few operations ingest and retrieval need; for everyone else, the
    :class:`~rag.search.corpus.Corpus` they read (every Chroma filter is written here, from a :class:`Scope`).

    One subclass per ``store.mode``: :class:`EmbeddedStore` (a folder on this machine) and
    :class:`ServerStore` (a Chroma server). They differ in how they connect, how a write is announced to
    readers in other processes, and where the keyword index lives by default; the rest is shared.
    """

    mode: ClassVar[str] = ""

    def __init__(
        self,
        client: Any,
        collection: Any,
        settings: Settings,
        keywords: SqliteKeywordIndex | None = None,
        crosslingual: Any | None = None,
    ) -> None:
        self.client = client
        self.collection = collection
        # The chunks' multilingual vectors (retrieval.crosslingual_vectors): the same ids and metadata, usem3's
        # vector of each chunk's text; written, updated and deleted with the chunks, searched across languages.
        self.crosslingual = crosslingual
        self.settings = settings
        self.keywords = keywords  # the persistent keyword index kept in step with the chunks (rag.search.keyword)
        self._languages: tuple[str, set[str] | None] | None = None  # (store version, its languages)
        self._listed: tuple[str, list[DocumentInfo]] | None = None  # (store version, its documents)
        try:
            self.max_batch = int(client.get_max_batch_size())
        except Exception:
            self.max_batch = 5000

    def count(self) -> int:
        return int(self._call("count chunks", self.collection.count))

    def iter_metadatas(self, where: dict[str, Any] | None = None) -> Iterator[tuple[str, dict[str, Any]]]:
        """All (id, metadata) pairs matching ``where``, read a page at a time."""
        for page in self._pages("read chunk metadata", "metadatas", where=where):
            ids = page["ids"]
            yield from zip(ids, page["metadatas"] or [{}] * len(ids), strict=True)

    def iter_documents(self) -> Iterator[tuple[str, str]]:
        """All (id, text) pairs of the collection, read a page at a time."""
        for page in self._pages("read chunks", "documents"):
            yield from zip(page["ids"], page["documents"], strict=True)

    def iter_search_texts(self) -> Iterator[tuple[str, str]]:
        """All (id, text the chunk is searched as: context header and text) pairs, read a page at a time."""
        for page in self._pages("read chunks", "documents", "metadatas"):
            for cid, doc, meta in zip(page["ids"], page["documents"], page["metadatas"], strict=True):
                yield cid, _searched_as(doc, meta)

    def ids(self) -> set[str]:
        """The id of every chunk (no text, no metadata)."""
        return {cid for page in self._pages("read chunk ids") for cid in page["ids"]}

    def search_texts(self, ids: Sequence[str]) -> Iterator[tuple[str, str]]:
        """(id, search text) of the given chunks that exist."""
        for cid, (doc, meta) in self.records(ids).items():
            yield cid, _searched_as(doc, meta)

    def reconcile_keywords(self) -> tuple[int, int]:
        """Bring the keyword index back to exactly the store's chunks (after a crash, or for a store written
        before the index existed). Returns (chunks indexed, ids dropped)."""
        if self.keywords is None:
            return 0, 0
        return self.keywords.reconcile(self.ids(), self.search_texts)

    def _pages(
        self, what: str, *fields: str, where: dict[str, Any] | None = None, collection: Any = None
    ) -> Iterator[dict[str, Any]]:
        """Successive ``collection.get`` pages of ``READ_PAGE`` chunks with ``fields`` included (of the chunks'
        collection unless another is given)."""
        collection = self.collection if collection is None else collection
        offset = 0
        while True:
            page = self._call(what, collection.get, where=where, include=list(fields), limit=READ_PAGE, offset=offset)
            yield page
            if len(page["ids"]) < READ_PAGE:
                return
            offset += len(page["ids"])

    def stored_documents(self, root: str, sources: Sequence[str] | None = None) -> dict[str, StoredDocument]:
        """Every source file under ``root`` that has chunks in the store (only ``sources`` when given)."""
        docs: dict[str, StoredDocument] = {}
        where: dict[str, Any] = {"root": root}
        if sources is not None:
            if not sources:
                return {}
            where = {"$and": [{"root": root}, {"source": {"$in": sorted(set(sources))}}]}
        for chunk_id, meta in self.iter_metadatas(where):
            source = str(meta.get("source", ""))
            doc = docs.setdefault(source, StoredDocument(source))
            doc.ids.append(chunk_id)
            doc.file_hashes.add(str(meta.get("file_hash", "")))
            doc.pipelines.add(str(meta.get("pipeline", "")))
            doc.expected_chunks.add(int(meta.get("n_chunks", -1)))
        return docs

    def documents(self, scope: Scope | None = None) -> list[DocumentInfo]:
        """Every document in the store (those ``scope`` admits) with its chunk and page counts, last ingest time
        and collections: from the keyword index, which keeps each chunk's document (those it does not know yet
        are read from Chroma once), or from every chunk's metadata in Chroma when there is no such index."""
        if self.keywords is not None:
            self._describe_unknown_chunks(self.keywords)
            listed = [DocumentInfo(*row) for row in self.keywords.documents()]
            return documents_in(sorted(listed, key=lambda d: (d.root, d.source)), scope)
        return documents_in(self.documents_from_chunks(), scope)

    def documents_from_chunks(self) -> list[DocumentInfo]:
        """The same list, from every chunk's metadata in Chroma (seconds per 100,000 chunks)."""
        docs: dict[tuple[str, str], DocumentInfo] = {}
        for _, meta in self.iter_metadatas():
            key = (str(meta.get("root", "")), str(meta.get("source", "")))
            doc = docs.setdefault(key, DocumentInfo(*key))
            doc.chunks += 1
            doc.pages.add(int(meta.get("page", 0)))
            doc.ingested_at = max(doc.ingested_at, str(meta.get("ingested_at", "")))
            doc.collections = doc.collections | frozenset(chunk_collections(meta))
        return sorted(docs.values(), key=lambda d: (d.root, d.source))

    def languages(self) -> set[str] | None:
        """The languages ('en', 'fr') of the stored chunks, remembered until the store changes; None when the
        store cannot say (a Chroma server's chunks written before the ingest recorded each chunk's language)."""
        version = self.version()
        if self._languages is None or self._languages[0] != version:
            self._languages = (version, self._read_languages())
        return self._languages[1]

    def _read_languages(self) -> set[str] | None:
        if self.keywords is not None:
            if self.keywords.lacks_metadata():
                self._describe_unknown_chunks(self.keywords)
            return self.keywords.languages()
        found = set()
        for language in LANGUAGES:
            page = self._call(
                "read chunk languages", self.collection.get, where={"language": language}, limit=1, include=[]
            )
            if page["ids"]:
                found.add(language)
        return found or None

    def describe_unknown_chunks(self) -> None:
        """Teach the keyword index the documents, languages and collections of the chunks it does not know
        them of (cheap when it knows them all: an index lookup and a count)."""
        if self.keywords is not None and self.keywords.lacks_metadata():
            self._describe_unknown_chunks(self.keywords)

    def _describe_unknown_chunks(self, index: SqliteKeywordIndex) -> None:
        """Give the keyword index the documents and languages of the chunks it does not know them of (an index
        written before it kept them: once; a chunk whose metadata has no language gets the one its text shows).
        Like the keyword entries, they are written before Chroma's: a chunk Chroma lost to a crash is listed
        until the next ingest drops it from the index."""
        unknown = index.ids_without_metadata()
        if not unknown:
            return
        if len(unknown) > READ_PAGE:  # most of the store: read it page by page
            wanted = set(unknown)
            for page in self._pages("read chunk metadata", "metadatas", "documents"):
                metadatas = page["metadatas"] or [{}] * len(page["ids"])
                rows = zip(page["ids"], page["documents"], metadatas, strict=True)
                known = [(cid, _with_language(doc, meta)) for cid, doc, meta in rows if cid in wanted]
                index.set_metadata([cid for cid, _ in known], [meta for _, meta in known])
            return
        records = self.records(unknown)
        index.set_metadata(list(records), [_with_language(doc, meta) for doc, meta in records.values()])

    def nearest(
        self, vector: Sequence[float], n: int, scope: Scope | None = None, crosslingual: bool = False
    ) -> list[Hit]:
        """The ``n`` chunks closest to ``vector`` (among those ``scope`` admits) as ranked hits, scored by
        cosine similarity; ``crosslingual``: a usem3 vector, searched among the chunks' multilingual vectors.

        Chroma's ``where`` costs what the chunks it admits cost, on every query (89 ms instead of 3.4 at 100,000
        chunks for a quarter of them). So a scope holding at least ``OVERFETCH_MIN_SHARE`` of the store is
        searched without it, for ``OVERFETCH`` times the hits its share should hold (its membership read from the
        keyword index), and the hits outside it are dropped. It is never asked again with the ``where`` when too
        few remain (the first hits all another's: rare at 1.5 times the share), so that the time a search takes
        does not tell whether other collections hold passages close to the question; it then returns fewer."""
        if (scope is not None and scope.empty) or (crosslingual and self.crosslingual is None):
            return []
        collection = self.crosslingual if crosslingual else None
        share = self._share(scope) if scope is not None else None
        if scope is not None and share is not None and share >= OVERFETCH_MIN_SHARE:
            hits = self._query(vector, min(OVERFETCH_MAX, math.ceil(n * OVERFETCH / share)), None, collection)
            admitted = self.ids_in(scope, among=[h.chunk_id for h in hits])
            kept = [h for h in hits if h.chunk_id in admitted][:n]
            return [Hit(h.chunk_id, rank, h.score) for rank, h in enumerate(kept)]
        return self._query(vector, n, scope, collection)

    def _query(self, vector: Sequence[float], n: int, scope: Scope | None, collection: Any = None) -> list[Hit]:
        where = chroma_where(scope)
        found = self._call(  # Chroma caps n_results at the collection size, and answers [] when empty
            "search",
            (self.collection if collection is None else collection).query,
            query_embeddings=[list(map(float, vector))],
            n_results=n,
            include=["distances"],
            **({"where": where} if where else {}),
        )
        return [
            Hit(cid, rank, 1.0 - float(d))
            for rank, (cid, d) in enumerate(zip(found["ids"][0], found["distances"][0], strict=True))
        ]

    def _share(self, scope: Scope) -> float | None:
        """The share of the stored chunks ``scope`` admits, from the keyword index's document list (kept until
        the store changes); None without a keyword index (reading every chunk's metadata would cost more than
        Chroma's filter)."""
        if self.keywords is None:
            return None
        version = self.version()
        if self._listed is None or self._listed[0] != version:
            self._listed = (version, self.documents())
        documents = self._listed[1]
        total = sum(d.chunks for d in documents)
        return sum(d.chunks for d in documents_in(documents, scope)) / total if total else None

    def records(self, ids: Sequence[str], scope: Scope | None = None) -> dict[str, Record]:
        """Text and metadata of the given chunks (those ``scope`` admits), by id."""
        if not ids:
            return {}
        got = self._call("read chunks", self.collection.get, ids=list(ids), include=["documents", "metadatas"])
        rows = zip(got["ids"], got["documents"], got["metadatas"], strict=True)
        return {cid: (doc, meta) for cid, doc, meta in rows if scope is None or scope.admits_chunk(meta)}

    def neighbours(
        self, root: str, source: str, indexes: Sequence[int], scope: Scope | None = None
    ) -> dict[int, Record]:
        """The chunks of document (root, source) at these positions (``chunk_index``), those ``scope`` admits."""
        where = {"$and": [{"root": root}, {"source": source}, {"chunk_index": {"$in": list(indexes)}}]}
        got = self._call("read chunks", self.collection.get, where=where, include=["documents", "metadatas"])
        return {
            int(meta["chunk_index"]): (doc, {**meta, CHUNK_ID: cid})
            for cid, doc, meta in zip(got["ids"], got["documents"], got["metadatas"], strict=True)
            if scope is None or scope.admits_chunk(meta)
        }

    def ids_in(self, scope: Scope, among: Collection[str] | None = None) -> set[str]:
        """The ids of the chunks ``scope`` admits (only those ``among`` when given): from the keyword index's
        tables when there is one, else from Chroma."""
        if scope.empty or (among is not None and not among):
            return set()
        if self.keywords is not None:
            if among is None:  # per search (among the hits) this costs more than the lookup: a chunk the index
                self.describe_unknown_chunks()  # does not know the document of yet is left out (never let in)
            return self.keywords.ids_in(scope, among)
        if among is not None:
            return set(self.records(list(among), scope))
        return {cid for page in self._pages("read chunk ids", where=chroma_where(scope)) for cid in page["ids"]}

    def set_collections(self, root: str, source: str, collections: Sequence[str]) -> int:
        """Make every chunk of document (root, source) belong to exactly ``collections`` (metadata only:
        nothing is embedded again). Returns the number of chunks changed."""
        wanted = sorted(set(collections))
        value: list[str] | None = wanted or None  # None removes the key (Chroma refuses an empty list)
        changed = {
            cid: {**meta, "collections": value}
            for cid, meta in self.iter_metadatas({"$and": [{"root": root}, {"source": source}]})
            if sorted(chunk_collections(meta)) != wanted
        }
        if changed:
            self.update_metadatas(list(changed), list(changed.values()))
        return len(changed)

    def upsert(
        self,
        ids: Sequence[str],
        embeddings: Sequence[Sequence[float]],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        multilingual: Sequence[Sequence[float] | None] | None = None,
    ) -> None:
        """Write chunks with their vectors (and their multilingual vectors: those given, ``None`` where a
        worker did not make one, are embedded here)."""
        # The keyword index first: if the process dies between the two writes, the index holds a few ids the
        # store lacks (searches skip them; the next ingest drops them), never the other way round.
        if self.keywords is not None:
            vectors = [np.asarray(e, dtype=np.float32).tobytes() for e in embeddings]
            searched = [_searched_as(t, m) for t, m in zip(texts, metadatas, strict=True)]
            self.keywords.add(ids, searched, vectors, metadatas)
        for i in range(0, len(ids), self.max_batch):
            sl = slice(i, i + self.max_batch)
            self._call(
                "write chunks",
                self.collection.upsert,
                ids=list(ids[sl]),
                embeddings=[list(map(float, e)) for e in embeddings[sl]],
                documents=list(texts[sl]),
                metadatas=list(metadatas[sl]),
            )
        self._write_crosslingual(ids, texts, metadatas, multilingual)
        self._mark_changed()

    @property
    def writes_crosslingual(self) -> bool:
        """Whether chunks written now get their multilingual vector: ``retrieval.crosslingual_vectors`` on, its
        package installed, and the chunks' own embedder not the multilingual one already."""
        chunk_model = (self.collection.metadata or {}).get("embedding_model")
        return self.settings.retrieval.crosslingual_vectors and chunk_model != USEM3_NAME and multilingual_available()

    def _crosslingual_to_write(self) -> Any:
        """The collection of the multilingual vectors, made by the first write that needs it (a reader never
        makes it: reading a store writes nothing to it)."""
        if self.crosslingual is None:
            name = self.collection.name + CROSSLINGUAL_SUFFIX
            self.crosslingual = self._call(
                "make the collection of multilingual vectors",
                vector_collection,
                self.client,
                name,
                self.settings,
                USEM3_NAME,
                512,
            )
        return self.crosslingual

    def _write_crosslingual(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        metadatas: Sequence[dict[str, Any]],
        given: Sequence[Sequence[float] | None] | None = None,
    ) -> None:
        """The chunks' multilingual vectors (``given``, else embedded here), written after the chunks: a process
        that dies between the two leaves chunks without one (``reconcile_crosslingual`` adds them), never one
        without its chunk."""
        if not self.writes_crosslingual or not ids:
            return
        vectors = [None if v is None else list(map(float, v)) for v in given] if given else [None] * len(ids)
        missing = [i for i, v in enumerate(vectors) if v is None]
        if missing:
            embedder = multilingual_embedder(self.settings.embedding.threads)
            for i, v in zip(missing, embedder.embed_documents([texts[i] for i in missing]), strict=True):
                vectors[i] = v
        collection = self._crosslingual_to_write()
        for i in range(0, len(ids), self.max_batch):
            sl = slice(i, i + self.max_batch)
            self._call(
                "write multilingual vectors",
                collection.upsert,
                ids=list(ids[sl]),
                embeddings=vectors[sl],
                metadatas=list(metadatas[sl]),
            )

    def reconcile_crosslingual(self) -> tuple[int, int]:
        """Bring the multilingual vectors back to exactly the store's chunks (after a crash, or for a store
        written before they existed: each missing chunk embedded by usem3, ~4 ms a chunk). Returns (chunks
        embedded, ids dropped)."""
        if self.crosslingual is None and not self.writes_crosslingual:
            return 0, 0
        count = self._call("count multilingual vectors", self.crosslingual.count) if self.crosslingual else 0
        if count == self.count():
            return 0, 0  # writes keep them in step: a crash between the two leaves the counts apart
        self._crosslingual_to_write()
        have = {cid for page in self._pages("read chunk ids", collection=self.crosslingual) for cid in page["ids"]}
        wanted = self.ids()
        extra = sorted(have - wanted)
        for i in range(0, len(extra), self.max_batch):
            self._call("delete multilingual vectors", self.crosslingual.delete, ids=extra[i : i + self.max_batch])
        missing = sorted(wanted - have) if self.writes_crosslingual else []
        for i in range(0, len(missing), READ_PAGE):
            records = self.records(missing[i : i + READ_PAGE])
            texts = [doc for doc, _ in records.values()]
            self._write_crosslingual(list(records), texts, [meta for _, meta in records.values()])
        return len(missing), len(extra)

    def update_metadatas(self, ids: Sequence[str], metadatas: Sequence[dict[str, Any]]) -> None:
        for i in range(0, len(ids), self.max_batch):
            sl = slice(i, i + self.max_batch)
            self._call("update chunks", self.collection.update, ids=list(ids[sl]), metadatas=list(metadatas[sl]))
            if self.crosslingual is not None:  # Chroma skips the ids it lacks
                self._call(
                    "update multilingual vectors",
                    self.crosslingual.update,
                    ids=list(ids[sl]),
                    metadatas=list(metadatas[sl]),
                )
        if self.keywords is not None:
            self.keywords.set_metadata(ids, metadatas)
        self._mark_changed()

    def delete(self, ids: Sequence[str]) -> None:
        for i in range(0, len(ids), self.max_batch):
            batch = list(ids[i : i + self.max_batch])
            self._call("delete chunks", self.collection.delete, ids=batch)
            if self.crosslingual is not None:
                self._call("delete multilingual vectors", self.crosslingual.delete, ids=batch)
        if self.keywords is not None and ids:  # after the store, for the same reason as in upsert
            self.keywords.remove(ids, log=True)
        if ids:
            self._mark_changed()

    @abstractmethod
    def version(self) -> str:
        """Changes whenever chunks were written, by this process or another (cheap: one small read)."""

    @abstractmethod
    def _mark_changed(self) -> None:
        """Tell readers in other processes that chunks were written."""

    def system(self) -> Any | None:
        """The Chroma system behind this store's client, when this process runs it (an embedded store)."""
        return None

    @classmethod
    @abstractmethod
    def connect(cls, settings: Settings) -> Any:
        """A Chroma client for this mode, with telemetry off."""

    @classmethod
    @abstractmethod
    def where(cls, settings: Settings) -> str:
        """Where the store is, in words."""

    @classmethod
    def default_keyword_index(cls, settings: Settings) -> Path | None:
        """Where the keyword index lives when ``paths.keyword_index`` does not say."""
        return None

    @classmethod
    def exists(cls, settings: Settings) -> bool:
        """Whether there is a store to read (without creating one); a server's is found when connecting."""
        return True

    def _call(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            raise StoreError(f"cannot {what} in the store ({self.describe()}): {exc}{store_error_hint(exc)}") from exc

    def describe(self) -> str:
        return f"collection '{self.settings.store.collection}' at {self.where(self.settings)}"


class EmbeddedStore(Store):
    """A store in a folder of this machine (``chromadb.PersistentClient``); writes are announced by a marker
    file beside the database, and the keyword index lives in the same folder."""

    mode = "embedded"

    def version(self) -> str:
        try:
            return (self.settings.paths.store_dir / CHANGE_MARKER).read_text(encoding="utf-8")
        except OSError:
            return ""

    def _mark_changed(self) -> None:
        import uuid

        try:
            (self.settings.paths.store_dir / CHANGE_MARKER).write_text(uuid.uuid4().hex, encoding="utf-8")
        except OSError as exc:
            raise StoreError(f"cannot write to the store folder {self.settings.paths.store_dir}: {exc}") from exc

    def system(self) -> Any:
        return client_system(self.client)

    @classmethod
    def connect(cls, settings: Settings) -> Any:
        import chromadb

        store_dir = settings.paths.store_dir
        store_dir.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(store_dir), settings=_chroma_settings())

    @classmethod
    def where(cls, settings: Settings) -> str:
        return str(settings.paths.store_dir)

    @classmethod
    def default_keyword_index(cls, settings: Settings) -> Path:
        return settings.paths.store_dir / INDEX_FILE

    @classmethod
    def exists(cls, settings: Settings) -> bool:
        return (settings.paths.store_dir / "chroma.sqlite3").is_file()


class ServerStore(Store):
    """A store on a Chroma server (``chromadb.HttpClient``, every request bounded by ``store.timeout_s``);
    writes are announced in the collection's metadata, so every replica notices any writer's change."""

    mode = "http"

    def version(self) -> str:
        fresh = self._call("read the collection", self.client.get_collection, self.collection.name)
        return str((fresh.metadata or {}).get(CHANGED_KEY, ""))

    def _mark_changed(self) -> None:
        import uuid

        fresh = self._call("read the collection", self.client.get_collection, self.collection.name)
        metadata = {**(fresh.metadata or {}), CHANGED_KEY: uuid.uuid4().hex}
        self._call("mark the collection changed", self.collection.modify, metadata=metadata)

    @classmethod
    def connect(cls, settings: Settings) -> Any:
        import chromadb

        s = settings.store
        chroma_settings = _chroma_settings()
        if s.ca_file is not None:
            chroma_settings.chroma_server_ssl_verify = str(s.ca_file)
        client = chromadb.HttpClient(
            host=s.host, port=s.port, ssl=s.ssl, headers=dict(s.headers) or None, settings=chroma_settings
        )
        bound_requests(client, s.timeout_s)
        return client

    @classmethod
    def where(cls, settings: Settings) -> str:
        return f"{settings.store.host}:{settings.store.port}"


STORE_CLASSES: dict[str, type[Store]] = {cls.mode: cls for cls in (EmbeddedStore, ServerStore)}


def store_class(settings: Settings) -> type[Store]:
    """The store class for ``store.mode``."""
    try:
        return STORE_CLASSES[settings.store.mode]
    except KeyError:
        raise StoreError(
            f"unknown store.mode '{settings.store.mode}': choose one of {', '.join(STORE_CLASSES)}"
        ) from None


def _with_language(text: str, metadata: dict[str, Any] | None) -> dict[str, Any]:
    """A chunk's metadata with its language (the one its text shows when the ingest did not record it)."""
    metadata = dict(metadata or {})
    if not metadata.get("language"):
        metadata["language"] = text_language(text)
    return metadata


def chroma_where(scope: Scope | None) -> dict[str, Any] | None:
    """The Chroma ``where`` filter that selects the chunks ``scope`` admits (None: no filter)."""
    if scope is None:
        return None
    clauses: list[dict[str, Any]] = []
    if scope.documents is not None:
        by_root: dict[str, list[str]] = {}
        for root, source in sorted(scope.documents):
            by_root.setdefault(root, []).append(source)
        chosen = [{"$and": [{"root": root}, {"source": {"$in": sources}}]} for root, sources in by_root.items()]
        clauses += chosen if len(chosen) <= 1 else [{"$or": chosen}]
    if scope.collections is not None:
        readable = [{"collections": {"$contains": c}} for c in sorted(scope.collections)]
        clauses += readable if len(readable) <= 1 else [{"$or": readable}]
    return None if not clauses else clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _searched_as(text: str, metadata: dict[str, Any] | None) -> str:
    """What a stored chunk is searched as: its context header (metadata ``context``) and its text."""
    return search_text(text, str((metadata or {}).get("context", "")))


def _chroma_settings() -> Any:
    from chromadb.config import Settings as ChromaSettings

    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


def chroma_client(settings: Settings) -> Any:
    """A Chroma client for the configured mode, with telemetry off."""
    cls = store_class(settings)
    try:
        return cls.connect(settings)
    except StoreError:
        raise
    except Exception as exc:
        kind = "server" if cls is ServerStore else "folder"
        where = f"{kind} {cls.where(settings)}"
        raise StoreError(f"cannot open the Chroma store ({where}): {exc}{store_error_hint(exc)}") from exc


def open_store(settings: Settings, model: EmbeddingModelInfo | None, create: bool = True) -> Store:
    """Open (or create) the chunk collection; refuse one built with another embedding model. Without a model
    (for work on metadata only, which needs no vectors), the collection must exist and any model is taken."""
    client = chroma_client(settings)
    name = settings.store.collection
    try:
        if create and model is not None:
            collection = vector_collection(client, name, settings, model.name, model.dimension)
        else:
            collection = client.get_collection(name=name, embedding_function=None)
    except Exception as exc:
        raise StoreError(f"cannot open collection '{name}' of the Chroma store: {exc}") from exc
    meta = collection.metadata or {}
    stored_model = meta.get("embedding_model")
    if model is not None and (
        stored_model not in (None, model.name) or int(meta.get("dimension", model.dimension)) != model.dimension
    ):
        raise StoreMismatchError(
            f"collection '{name}' was built with the embedding model {stored_model} "
            f"({meta.get('dimension')} dimensions) but {model.name} ({model.dimension}) is configured: "
            f"choose another collection (SOURCIER_STORE__COLLECTION) or delete the store to rebuild it"
        )
    crosslingual = _crosslingual_collection(client, settings)
    return store_class(settings)(client, collection, settings, open_keyword_index(settings), crosslingual)


def vector_collection(client: Any, name: str, settings: Settings, model_name: str, dimension: int) -> Any:
    """The collection ``name`` (made when missing) of vectors that ``model_name`` computes, never Chroma
    itself (its default embedding function downloads a model): cosine HNSW at ``store.hnsw_ef``."""
    ef = settings.store.hnsw_ef
    return client.get_or_create_collection(
        name=name,
        embedding_function=None,
        configuration={"hnsw": {"space": "cosine", "ef_construction": ef, "ef_search": ef}},
        metadata={"embedding_model": model_name, "dimension": dimension},
    )


def _crosslingual_collection(client: Any, settings: Settings) -> Any | None:
    """The collection of the chunks' multilingual vectors when there is one (kept in step with the chunks even
    with ``retrieval.crosslingual_vectors`` off; the first write that needs it makes it)."""
    try:
        return client.get_collection(name=settings.store.collection + CROSSLINGUAL_SUFFIX, embedding_function=None)
    except Exception:
        return None  # none was made (a Chroma server that cannot answer has failed the chunks' collection first)


def keyword_index_path(settings: Settings) -> Path | None:
    """Where the persistent keyword index lives: ``paths.keyword_index``, else beside an embedded store; None
    for a Chroma server without a configured path, or with ``retrieval.keyword_index = "memory"``."""
    if settings.retrieval.keyword_index != "sqlite":
        return None
    if settings.paths.keyword_index is not None:
        return settings.paths.keyword_index
    return store_class(settings).default_keyword_index(settings)


def open_keyword_index(settings: Settings) -> SqliteKeywordIndex | None:
    path = keyword_index_path(settings)
    return shared_index(path) if path is not None else None


def drop_cached_stores(store_dir: Path | None = None) -> None:
    """Forget Chroma's per-process cache of embedded stores (one folder's, or all).

    Chroma keeps one in-memory index per store folder and process; writes made by another process
    (an ingest beside a long-running reader) are not visible to it until the cache is dropped and the
    store opened again. Clients already open keep working on their own copy (until it is released with
    :func:`release_system`).
    """
    forget_cached_store(store_dir)


# A dropped embedded store's Chroma "system" (its database connection, its in-memory vector index) lives on
# until it is stopped: tens of MB per reopen. Readers that reopen their store (rag.search.retrieval.LiveRetriever)
# claim the system they use and release it when they move to a fresh one; the last release stops it.
_CLAIMS: dict[int, tuple[Any, int]] = {}  # id(system) -> (system, readers using it)
_CLAIMS_LOCK = threading.Lock()


def store_system(store: Store) -> Any | None:
    """The Chroma system behind an embedded store's client (None for a Chroma server)."""
    return store.system()


def claim_system(system: Any | None) -> None:
    if system is None:
        return
    with _CLAIMS_LOCK:
        _, readers = _CLAIMS.get(id(system), (system, 0))
        _CLAIMS[id(system)] = (system, readers + 1)


def release_system(system: Any | None) -> bool:
    """One reader is done with ``system``; the last one stops it and gives its memory back. Only for a system
    already dropped from Chroma's cache (:func:`drop_cached_stores`), when no ingest of this process uses it
    (it holds the ingest lock while it does). True when it was stopped."""
    if system is None:
        return False
    with _CLAIMS_LOCK:
        _, readers = _CLAIMS.get(id(system), (system, 1))
        if readers > 1:
            _CLAIMS[id(system)] = (system, readers - 1)
            return False
        _CLAIMS.pop(id(system), None)
    with contextlib.suppress(Exception):  # stopping a half-broken system is best effort
        system.stop()
    gc.collect()
    _give_memory_back()
    return True


def _give_memory_back() -> None:
    """Return freed heap pages to the operating system (glibc keeps them otherwise)."""
    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to do
        ctypes.CDLL("libc.so.6").malloc_trim(0)
