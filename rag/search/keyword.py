"""Keyword (BM25) search over the store's chunks: one interface, two indexes.

- :class:`SqliteKeywordIndex` (default): SQLite FTS5 in a file beside the store (``keywords.sqlite3``),
  written by the ingest in step with the Chroma store and updated in place (added and removed chunks only).
  A reader opens it in milliseconds and sees every committed write at once: nothing is rebuilt.
- :class:`MemoryKeywordIndex`: bm25s over every chunk, built in memory by each reader (the index of earlier
  versions; used for a Chroma server without a shared index file, or on request).

Both index the same terms (``rag.text.keyword_tokens``: stop words out, each word cut by the Snowball stemmer
of the text's language, folded) of the same text (``rag.text.search_text``: the chunk's context header and its
text). An index written with other terms (``TERMS_VERSION``) has its terms written again from the store's texts
once, by the first reader or ingest that opens it (``reconcile``).

Crash safety: the store writes the index before Chroma when adding and after Chroma when removing, so the
index never misses a stored chunk; it may hold a few ids Chroma lost to a crash (retrieval skips ids
it cannot read). Each ingest starts with :meth:`SqliteKeywordIndex.reconcile`, which brings the index back
to exactly the store's chunks; a reader that finds the index behind the store (a store built before the
index existed) fills it the same way, once.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Protocol

from rag.errors import StoreError, store_error_hint
from rag.search.scope import Scope, chunk_collections
from rag.text import LANGUAGES, keyword_tokens

INDEX_FILE = "keywords.sqlite3"
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS chunks (row INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE)",
    # 'chunks' and 'terms' (their total length): BM25's document count and average length, kept in step.
    "CREATE TABLE IF NOT EXISTS stats (key TEXT PRIMARY KEY, value INTEGER NOT NULL)",
    # Terms are written already folded and cut by keyword_tokens, separated by blanks; '_' stays inside a term
    # as in the \w words keyword_tokens finds.
    'CREATE VIRTUAL TABLE IF NOT EXISTS terms USING fts5(body, tokenize = "unicode61 remove_diacritics 0 '
    "tokenchars '_'\")",
    # The latest writes, in order: a chunk's vector when it was written, NULL when it was removed. A reader
    # whose copy of Chroma's vector index predates them searches them beside it (rag.search.retrieval.FreshVectors)
    # instead of loading the whole index again (seconds at a million chunks).
    "CREATE TABLE IF NOT EXISTS recent (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, vector BLOB)",
    # Each chunk's document and page (row = chunks.row): the store's document list in one query, instead of
    # reading every chunk's metadata from Chroma (66 s at a million chunks).
    "CREATE TABLE IF NOT EXISTS chunk_docs (row INTEGER PRIMARY KEY, root TEXT NOT NULL, source TEXT NOT NULL, "
    "page INTEGER NOT NULL, ingested_at TEXT NOT NULL, language TEXT)",
    # Covering the document list's query: 0.1 s at a million chunks instead of 1.0 s.
    "CREATE INDEX IF NOT EXISTS chunk_docs_listed ON chunk_docs(root, source, page, ingested_at)",
    # The collections each document belongs to (its chunks' metadata 'collections', rag.access): a search
    # held to a person's collections reads their documents' rows through chunk_docs_listed.
    "CREATE TABLE IF NOT EXISTS doc_collections (collection TEXT NOT NULL, root TEXT NOT NULL, source TEXT NOT NULL, "
    "PRIMARY KEY (collection, root, source)) WITHOUT ROWID",
    "CREATE INDEX IF NOT EXISTS doc_collections_of ON doc_collections(root, source)",
)
# The store's languages (does it hold a chunk in French?) in one index lookup each.
_LANGUAGE_INDEX = "CREATE INDEX IF NOT EXISTS chunk_docs_language ON chunk_docs(language)"
# How the indexed terms are cut: 1, folded words with a final -s/-x cut; 2, Snowball stems per language.
TERMS_VERSION = 2
_WRITE_BATCH = 500
# The log of recent writes keeps this many entries (about 1.6 KB each at 384 dimensions); a reader that
# fell further behind opens the store again.
RECENT_KEPT = 50_000
# FTS5 scores every chunk holding any query term, so a search costs about the sum of its terms' document
# frequencies (measured: 2.5 ms per 1,000 such postings on 2 cores). A search reads the rarest terms first and
# stops adding terms past this many postings (the rarest one is always kept): exact BM25 up to about 100 ms
# of work, then the most common terms (the lowest idf, the least weight in BM25) are left out. Every question
# of the development sets stays under it (FinanceBench, 22k chunks of filings: 30k at most), so their
# rankings are exactly the in-memory index's; past a few hundred thousand chunks, long questions lose terms.
MAX_POSTINGS = 40_000
# Document frequencies are remembered per reader and forgotten when the index has grown by this share.
_DF_REFRESH = 0.05
# FTS5's bm25() (k1 1.2, fixed) picks the candidates; they are scored again with the in-memory index's BM25
# (bm25s: Lucene idf, k1 1.5, b 0.75, repeated query terms counted), so both indexes rank alike.
RESCORED = 200
K1, B = 1.5, 0.75


class KeywordIndex(Protocol):
    """What retrieval needs from a keyword index: the ``n`` best (chunk id, BM25 score) for a query, best first,
    among the chunks ``within`` when it is given (a question scoped to chosen documents)."""

    def search(self, query: str, n: int, within: Collection[str] | None = None) -> list[tuple[str, float]]: ...


def _terms(text: str) -> str:
    return " ".join(keyword_tokens(text))


class MemoryKeywordIndex:
    """BM25 (bm25s) over the given chunks, held in memory."""

    def __init__(self, ids: list[str], texts: Sequence[str]) -> None:
        import bm25s

        self.ids = ids
        self._bm25 = bm25s.BM25()
        self._vocab: set[str] = set()
        if ids:
            self._bm25.index([keyword_tokens(t) or [""] for t in texts], show_progress=False)
            self._vocab = set(self._bm25.vocab_dict)

    def search(self, query: str, n: int, within: Collection[str] | None = None) -> list[tuple[str, float]]:
        terms = [t for t in keyword_tokens(query) if t in self._vocab]
        if not terms or not self.ids or n <= 0:
            return []
        k = len(self.ids) if within is not None else min(n, len(self.ids))  # scoped: rank all, then keep
        docs, scores = self._bm25.retrieve([terms], k=k, show_progress=False)
        found = [(self.ids[int(d)], float(s)) for d, s in zip(docs[0], scores[0], strict=True) if s > 0]
        return [hit for hit in found if within is None or hit[0] in within][:n]


class SqliteKeywordIndex:
    """BM25 over SQLite FTS5 in one file; safe to share between threads and processes (WAL journal)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._df: dict[str, int] = {}
        self._df_rows = 0
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, timeout=60.0, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in _SCHEMA:
                self._db.execute(statement)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(chunk_docs)")}
            if "language" not in columns:  # an index written before it kept each chunk's language
                self._db.execute("ALTER TABLE chunk_docs ADD COLUMN language TEXT")
            self._db.execute(_LANGUAGE_INDEX)
            self._count_stats_once()
            self._db.execute("CREATE VIRTUAL TABLE IF NOT EXISTS temp.vocab USING fts5vocab(main, 'terms', 'row')")
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the keyword index {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def count(self) -> int:
        return self._stats()[0]

    def ids(self) -> set[str]:
        return {row[0] for row in self._query("read the keyword index", "SELECT id FROM chunks")}

    def entries(self) -> dict[str, str]:
        """Every indexed chunk id with its indexed terms (two indexes holding the same entries search alike)."""
        sql = "SELECT c.id, t.body FROM chunks c JOIN terms t ON t.rowid = c.row"
        return dict(self._query("read the keyword index", sql))

    def search(
        self, query: str, n: int, within: Collection[str] | None = None, scope: Scope | None = None
    ) -> list[tuple[str, float]]:
        """The ``n`` chunks with the best BM25 score for the query's terms (see ``RESCORED``), among ``within``
        when given (the ids go to SQLite as one JSON array) and those ``scope`` admits (read from this index's
        own tables): the ranking is made inside them."""
        weights = Counter(keyword_tokens(query))
        if not weights or n <= 0 or (within is not None and not within) or (scope is not None and scope.empty):
            return []
        frequencies = self._document_frequencies(list(weights))
        terms = _searched_terms(frequencies)
        if not terms:
            return []
        match = " OR ".join('"' + t.replace('"', '""') + '"' for t in terms)
        scoped, params = "", [match]
        if within is not None:
            scoped = " AND rowid IN (SELECT row FROM chunks WHERE id IN (SELECT value FROM json_each(?)))"
            params.append(json.dumps(sorted(within)))
        for condition, values in _scope_conditions(scope, "terms.rowid"):
            scoped += f" AND {condition}"
            params.append(values)
        found = self._query(
            "search the keyword index",
            f"SELECT c.id, t.body FROM (SELECT rowid, body, rank FROM terms WHERE terms MATCH ?{scoped} "
            "ORDER BY rank LIMIT ?) t JOIN chunks c ON c.row = t.rowid ORDER BY t.rank",
            (*params, max(n, RESCORED)),
        )
        chunks, total = self._stats()
        average = total / chunks if chunks else 1.0
        idf = {t: math.log(1 + (chunks - frequencies[t] + 0.5) / (frequencies[t] + 0.5)) for t in terms}
        scored = []
        for cid, body in found:
            words = body.split()
            norm = K1 * (1 - B + B * len(words) / average)
            tf = Counter(words)
            score = sum(weights[t] * idf[t] * tf[t] / (tf[t] + norm) for t in terms if tf[t])
            scored.append((cid, score))
        scored.sort(key=lambda pair: -pair[1])  # stable: FTS5's order breaks ties
        return scored[:n]

    def outdated(self) -> bool:
        """Whether the indexed terms were cut otherwise than ``keyword_tokens`` cuts them now."""
        rows = self._query("read the keyword index", "SELECT value FROM stats WHERE key = 'terms_version'")
        return (int(rows[0][0]) if rows else 1) != TERMS_VERSION

    def languages(self) -> set[str]:
        """The languages of the indexed chunks whose language is known."""
        sql = "SELECT EXISTS(SELECT 1 FROM chunk_docs WHERE language = ?)"
        return {lang for lang in LANGUAGES if self._query("read the keyword index", sql, (lang,))[0][0]}

    def _stats(self) -> tuple[int, int]:
        rows = dict(self._query("read the keyword index", "SELECT key, value FROM stats"))
        return int(rows.get("chunks", 0)), int(rows.get("terms", 0))

    def _count_stats_once(self) -> None:
        """Fill the statistics of an index written before they were kept (one pass over it)."""
        if self._db.execute("SELECT count(*) FROM stats").fetchone()[0]:
            return
        chunks = terms = 0
        for (body,) in self._db.execute("SELECT body FROM terms"):
            chunks += 1
            terms += len(body.split())
        stats = [("chunks", chunks), ("terms", terms)] + ([] if chunks else [("terms_version", TERMS_VERSION)])
        self._db.executemany("INSERT OR REPLACE INTO stats VALUES (?, ?)", stats)

    def _document_frequencies(self, terms: list[str]) -> dict[str, int]:
        """How many chunks hold each term, remembered until the index grows by ``_DF_REFRESH`` (a term not
        indexed yet is looked up again next time: a write may bring it at once)."""
        rows = int(self._query("read the keyword index", "SELECT coalesce(max(row), 0) FROM chunks")[0][0])
        if rows > self._df_rows * (1 + _DF_REFRESH) or rows < self._df_rows:
            self._df, self._df_rows = {}, rows
        frequencies = {}
        for term in terms:
            if term not in self._df:
                found = self._query("read the keyword index", "SELECT doc FROM temp.vocab WHERE term = ?", (term,))
                if found and found[0][0]:
                    self._df[term] = int(found[0][0])
            frequencies[term] = self._df.get(term, 0)
        return frequencies

    def add(
        self,
        ids: Sequence[str],
        texts: Sequence[str],
        vectors: Sequence[bytes] | None = None,
        metadatas: Sequence[Mapping[str, object]] | None = None,
    ) -> None:
        """Index the chunks not indexed yet (a chunk's id is derived from its text: a known id is the same text);
        with ``vectors`` (float32 bytes), log each write for readers (see ``recent_since``); with
        ``metadatas``, keep each chunk's document and page (see ``documents``)."""
        with self._writing("write the keyword index") as db:
            chunks = terms = 0
            for cid, text in zip(ids, texts, strict=True):
                cursor = db.execute("INSERT OR IGNORE INTO chunks(id) VALUES (?)", (cid,))
                if cursor.rowcount:
                    body = _terms(text)
                    db.execute("INSERT INTO terms(rowid, body) VALUES (?, ?)", (cursor.lastrowid, body))
                    chunks += 1
                    terms += len(body.split())
            _count(db, chunks, terms)
            if vectors is not None:
                _log(db, zip(ids, vectors, strict=True))
            if metadatas is not None:
                _describe(db, zip(ids, metadatas, strict=True))

    def set_metadata(self, ids: Sequence[str], metadatas: Sequence[Mapping[str, object]]) -> None:
        """Keep these indexed chunks' documents and pages (their metadata changed, or were not kept yet)."""
        with self._writing("write the keyword index") as db:
            _describe(db, zip(ids, metadatas, strict=True))

    def lacks_metadata(self) -> bool:
        """Whether some indexed chunk's document or language is not known here (cheap: an index lookup and a
        count, instead of ``ids_without_metadata``'s pass over every chunk)."""
        sql = (
            "SELECT EXISTS(SELECT 1 FROM chunk_docs WHERE language IS NULL) "
            "OR (SELECT count(*) FROM chunk_docs) < (SELECT count(*) FROM chunks)"
        )
        return bool(self._query("read the keyword index", sql)[0][0])

    def ids_without_metadata(self) -> list[str]:
        """Indexed chunks whose document or language is not known here (an index written before it kept them)."""
        sql = (
            "SELECT c.id FROM chunks c LEFT JOIN chunk_docs d ON d.row = c.row WHERE d.row IS NULL "
            "OR d.language IS NULL"
        )
        return [row[0] for row in self._query("read the keyword index", sql)]

    def documents(self) -> list[tuple[str, str, int, set[int], str, frozenset[str]]]:
        """(root, source, chunks, pages, last ingest time, collections) of every document of the indexed chunks."""
        sql = (
            "SELECT root, source, COUNT(*), group_concat(DISTINCT page), MAX(ingested_at) FROM chunk_docs "
            "GROUP BY root, source"
        )
        held: dict[tuple[str, str], set[str]] = {}
        for collection, root, source in self._query("read the keyword index", "SELECT * FROM doc_collections"):
            held.setdefault((root, source), set()).add(collection)
        return [
            (root, source, int(n), {int(p) for p in str(pages).split(",")}, at, frozenset(held.get((root, source), ())))
            for root, source, n, pages, at in self._query("read the keyword index", sql)
        ]

    def ids_in(self, scope: Scope, among: Collection[str] | None = None) -> set[str]:
        """The indexed chunks ``scope`` admits (only those ``among`` when given), by their known document."""
        sql, params = "SELECT c.id FROM chunks c WHERE 1", []
        if among is not None:  # driven by the ids given (each found by its key): 0.3 ms for 240 at 100,000 chunks
            sql, params = (
                "SELECT c.id FROM json_each(?) j JOIN chunks c ON c.id = j.value WHERE 1",
                [json.dumps(sorted(among))],
            )
        for condition, values in _scope_conditions(scope, "c.row"):
            sql += f" AND {condition}"
            params.append(values)
        return {row[0] for row in self._query("read the keyword index", sql, params)}

    def remove(self, ids: Iterable[str], log: bool = False) -> None:
        """Forget these chunks; with ``log``, tell readers they were removed (see ``recent_since``)."""
        ids = list(ids)
        with self._writing("remove from the keyword index") as db:
            chunks = terms = 0
            for cid in ids:
                row = db.execute("SELECT row FROM chunks WHERE id = ?", (cid,)).fetchone()
                if row is not None:
                    body = db.execute("SELECT body FROM terms WHERE rowid = ?", row).fetchone()
                    db.execute("DELETE FROM terms WHERE rowid = ?", row)
                    db.execute("DELETE FROM chunks WHERE row = ?", row)
                    db.execute("DELETE FROM chunk_docs WHERE row = ?", row)
                    chunks -= 1
                    terms -= len(body[0].split()) if body else 0
            _count(db, chunks, terms)
            db.execute(
                "DELETE FROM doc_collections WHERE NOT EXISTS (SELECT 1 FROM chunk_docs d "
                "WHERE d.root = doc_collections.root AND d.source = doc_collections.source)"
            )
            if log:
                _log(db, ((cid, None) for cid in ids))

    def last_write(self) -> int:
        """The number of the latest logged write (0 when none)."""
        return int(self._query("read the log of writes", "SELECT COALESCE(MAX(seq), 0) FROM recent")[0][0])

    def recent_since(self, seq: int) -> list[tuple[int, str, bytes | None]] | None:
        """The writes logged after write number ``seq``, in order: (number, chunk id, float32 vector bytes, or
        None for a removal). None when some of them are no longer kept (``RECENT_KEPT``)."""
        rows = self._query(
            "read the log of writes", "SELECT seq, id, vector FROM recent WHERE seq > ? ORDER BY seq", (seq,)
        )
        if rows and rows[0][0] != seq + 1:
            return None
        if not rows and seq != self.last_write():  # the index was made again since (a store deleted, rebuilt)
            return None
        return [(int(n), str(cid), vector) for n, cid, vector in rows]

    def reconcile(
        self, stored_ids: set[str], texts_of: Callable[[list[str]], Iterator[tuple[str, str]]]
    ) -> tuple[int, int]:
        """Make the index hold exactly ``stored_ids``: index the missing ones (their search texts read through
        ``texts_of``, in batches) and drop the others. Returns (added, removed)."""
        indexed = self.ids()
        extra = indexed - stored_ids
        missing = sorted(stored_ids - indexed)
        self.remove(extra)
        if self.outdated():
            self._rewrite_terms(sorted(indexed & stored_ids), texts_of)
        for i in range(0, len(missing), _WRITE_BATCH):
            pairs = list(texts_of(missing[i : i + _WRITE_BATCH]))
            self.add([cid for cid, _ in pairs], [text for _, text in pairs])
        return len(missing), len(extra)

    def _rewrite_terms(self, ids: list[str], texts_of: Callable[[list[str]], Iterator[tuple[str, str]]]) -> None:
        """Cut the terms of these indexed chunks again as ``keyword_tokens`` does now (an index written by an
        earlier version), then mark the index current."""
        for i in range(0, len(ids), _WRITE_BATCH):
            pairs = list(texts_of(ids[i : i + _WRITE_BATCH]))
            with self._writing("rewrite the keyword index") as db:
                for cid, text in pairs:
                    row = db.execute("SELECT row FROM chunks WHERE id = ?", (cid,)).fetchone()
                    old = db.execute("SELECT body FROM terms WHERE rowid = ?", row).fetchone() if row else None
                    if old is None:
                        continue
                    body = _terms(text)
                    db.execute("UPDATE terms SET body = ? WHERE rowid = ?", (body, row[0]))
                    _count(db, 0, len(body.split()) - len(old[0].split()))
        with self._writing("write the keyword index") as db:
            db.execute("INSERT OR REPLACE INTO stats VALUES ('terms_version', ?)", (TERMS_VERSION,))
        self._df, self._df_rows = {}, 0

    def _query(self, what: str, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot {what} ({self.path}): {exc}") from exc

    @contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE .. COMMIT, rolled back on any error), under the lock."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                raise StoreError(f"cannot {what} ({self.path}): {exc}{store_error_hint(exc)}") from exc


def _searched_terms(frequencies: dict[str, int]) -> list[str]:
    """The query's terms that occur (term -> chunks holding it), rarest first, until ``MAX_POSTINGS``."""
    kept, postings = [], 0
    for term in sorted((t for t, f in frequencies.items() if f), key=frequencies.__getitem__):
        if kept and postings + frequencies[term] > MAX_POSTINGS:
            break
        kept.append(term)
        postings += frequencies[term]
    return kept


def _log(db: sqlite3.Connection, writes: Iterable[tuple[str, bytes | None]]) -> None:
    """Append writes to the log, and forget the oldest past ``RECENT_KEPT``, in the write's own transaction."""
    db.executemany("INSERT INTO recent(id, vector) VALUES (?, ?)", writes)
    db.execute("DELETE FROM recent WHERE seq <= (SELECT MAX(seq) FROM recent) - ?", (RECENT_KEPT,))


def _describe(db: sqlite3.Connection, described: Iterable[tuple[str, Mapping[str, object]]]) -> None:
    """Keep indexed chunks' document, page, ingest time and language, and their documents' collections, in the
    write's own transaction."""
    collections: dict[tuple[str, str], list[str]] = {}
    for cid, meta in described:
        row = db.execute("SELECT row FROM chunks WHERE id = ?", (cid,)).fetchone()
        if row is not None:
            root, source = str(meta.get("root", "")), str(meta.get("source", ""))
            db.execute(
                "INSERT OR REPLACE INTO chunk_docs VALUES (?, ?, ?, ?, ?, ?)",
                (row[0], root, source, int(meta.get("page", 0) or 0),
                 str(meta.get("ingested_at", "")), meta.get("language") or None),
            )  # fmt: skip
            collections[(root, source)] = chunk_collections(meta)  # the same for every chunk of a document
    for (root, source), held in collections.items():
        db.execute("DELETE FROM doc_collections WHERE root = ? AND source = ?", (root, source))
        db.executemany("INSERT OR IGNORE INTO doc_collections VALUES (?, ?, ?)", [(c, root, source) for c in held])


def _scope_conditions(scope: Scope | None, row: str) -> list[tuple[str, str]]:
    """SQL conditions that the chunk of row ``row`` (an SQL expression) is inside ``scope``, one (condition, JSON
    parameter) per limit. Checked per matching row through two index lookups (chunk_docs' key, then
    doc_collections'), so a search costs what its matches cost, whatever share of the store the scope holds
    (a ``rowid IN (every row of the scope)`` list costs that share on every search: 16 ms instead of 0.3 at
    2,000 chunks)."""
    conditions = []
    if scope is not None and scope.documents is not None:
        conditions.append((
            f"EXISTS (SELECT 1 FROM chunk_docs d WHERE d.row = {row} "
            "AND d.root || char(31) || d.source IN (SELECT value FROM json_each(?)))",
            json.dumps(sorted(f"{root}\x1f{source}" for root, source in scope.documents)),
        ))  # fmt: skip
    if scope is not None and scope.collections is not None:
        conditions.append((
            f"EXISTS (SELECT 1 FROM chunk_docs d JOIN doc_collections a ON a.root = d.root AND a.source = d.source "
            f"WHERE d.row = {row} AND a.collection IN (SELECT value FROM json_each(?)))",
            json.dumps(sorted(scope.collections)),
        ))  # fmt: skip
    return conditions


def _count(db: sqlite3.Connection, chunks: int, terms: int) -> None:
    """Add to the index's statistics, in the write's own transaction."""
    db.executemany(
        "INSERT INTO stats VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = value + excluded.value",
        [("chunks", chunks), ("terms", terms)],
    )


_SHARED: dict[Path, SqliteKeywordIndex] = {}
_SHARED_LOCK = threading.Lock()


def shared_index(path: Path) -> SqliteKeywordIndex:
    """The process's one open index for ``path`` (every store opened on the same folder shares it, so a
    reader that reopens its store after each change does not open the file again)."""
    key = Path(path).absolute()
    with _SHARED_LOCK:
        index = _SHARED.get(key)
        if index is None or not key.exists():
            index = _SHARED[key] = SqliteKeywordIndex(key)
        return index
