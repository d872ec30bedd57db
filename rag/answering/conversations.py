"""Conversations kept on this machine: every question and its answer (text, sources with file, page, span
and scores, timings), in one SQLite file beside the store, readable by this user only.

The page lists, reopens, renames, deletes and exports them; the API continues one by its id. A deleted
conversation is really gone: SQLite's ``secure_delete`` overwrites its rows, not just unlinks them. An
answer is kept as it was given; when it is shown again, each source says whether the store still holds
the cited passage as it was (chunk ids come from the chunk's text, so an unchanged id is an unchanged
passage), holds another version of its document ("changed since"), or no longer holds the document.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import threading
import types
import typing
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.answering.answer import Answer
from rag.errors import StoreError
from rag.private_db import open_private

TITLE_CHARS = 80
SCHEMA = (
    "CREATE TABLE IF NOT EXISTS conversations (id TEXT PRIMARY KEY, title TEXT NOT NULL, "
    "created_at TEXT NOT NULL, updated_at TEXT NOT NULL, scope TEXT NOT NULL DEFAULT '[]')",
    "CREATE TABLE IF NOT EXISTS turns (conversation_id TEXT NOT NULL REFERENCES conversations(id) "
    "ON DELETE CASCADE, position INTEGER NOT NULL, question TEXT NOT NULL, answer TEXT NOT NULL, "
    "asked_at TEXT NOT NULL, PRIMARY KEY (conversation_id, position))",
)


@dataclass(frozen=True)
class ConversationInfo:
    """One conversation as listed: its id, title (the first question unless renamed), dates, turns."""

    id: str
    title: str
    created_at: str
    updated_at: str
    turns: int


@dataclass
class Conversation:
    """A conversation with its answers, in order; ``scope`` the documents its questions were limited to."""

    info: ConversationInfo
    answers: list[Answer] = field(default_factory=list)
    scope: list[str] = field(default_factory=list)


class ConversationNotFound(StoreError):
    """No conversation has that id (deleted, or never made here)."""


class ConversationStore:
    """The conversations of one store, in a SQLite file (user-only permissions); safe across threads.

    Each conversation has an owner (an account's name; '' on an install without accounts), and every method
    acts on one owner's conversations only: another's is "not found", as one that never existed (:meth:`of`
    binds an owner once)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = open_private(self.path, SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(conversations)")}
            if "owner" not in columns:  # a file written before conversations had owners: the install's own
                self._db.execute("ALTER TABLE conversations ADD COLUMN owner TEXT NOT NULL DEFAULT ''")
            self._db.execute("CREATE INDEX IF NOT EXISTS conversations_of ON conversations(owner, updated_at)")
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"cannot open the conversations file {self.path}: {exc}") from exc

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def of(self, owner: str) -> OwnedConversations:
        """These conversations as ``owner`` sees them."""
        return OwnedConversations(self, owner)

    def create(self, first_question: str, scope: Sequence[str] = (), owner: str = "") -> str:
        """A new conversation titled by its first question; returns its id."""
        ident, now = uuid.uuid4().hex, _now()
        title = " ".join(first_question.split())[:TITLE_CHARS] or "…"
        self._run(
            "INSERT INTO conversations (id, title, created_at, updated_at, scope, owner) VALUES (?, ?, ?, ?, ?, ?)",
            (ident, title, now, now, json.dumps(list(scope)), owner),
        )
        return ident

    def add(self, conversation_id: str, answer: Answer, scope: Sequence[str] = (), owner: str = "") -> int:
        """Append a question and its answer; returns its position (from 0)."""
        with self._lock, self._db:
            self._db.execute("BEGIN IMMEDIATE")
            row = self._db.execute("SELECT count(*) FROM turns WHERE conversation_id = ?", (conversation_id,))
            position = int(row.fetchone()[0])
            if not self._db.execute(
                "SELECT 1 FROM conversations WHERE id = ?" + _OWNED, (conversation_id, owner)
            ).fetchone():
                raise ConversationNotFound(f"no conversation {conversation_id!r}")
            now = _now()
            self._db.execute(
                "INSERT INTO turns (conversation_id, position, question, answer, asked_at) VALUES (?, ?, ?, ?, ?)",
                (conversation_id, position, answer.question, json.dumps(dataclasses.asdict(answer)), now),
            )
            self._db.execute(
                "UPDATE conversations SET updated_at = ?, scope = ? WHERE id = ?",
                (now, json.dumps(list(scope)), conversation_id),
            )
            self._db.execute("COMMIT")
        return position

    def list(self, owner: str = "") -> list[ConversationInfo]:
        """Every conversation (of ``owner``), the most recently continued first."""
        rows = self._run(
            "SELECT c.id, c.title, c.created_at, c.updated_at, count(t.position) FROM conversations c "
            "LEFT JOIN turns t ON t.conversation_id = c.id WHERE 1" + _OWNED.replace("owner", "c.owner") + " "
            "GROUP BY c.id ORDER BY c.updated_at DESC, c.id",
            (owner,),
        )
        return [ConversationInfo(*row) for row in rows]

    def get(self, conversation_id: str, owner: str = "") -> Conversation:
        rows = self._run(
            "SELECT id, title, created_at, updated_at, scope FROM conversations WHERE id = ?" + _OWNED,
            (conversation_id, owner),
        )
        if not rows:
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        ident, title, created, updated, scope = rows[0]
        turns = self._run("SELECT answer FROM turns WHERE conversation_id = ? ORDER BY position", (conversation_id,))
        answers = [from_record(Answer, json.loads(text)) for (text,) in turns]
        return Conversation(ConversationInfo(ident, title, created, updated, len(answers)), answers, json.loads(scope))

    def rename(self, conversation_id: str, title: str, owner: str = "") -> None:
        title = " ".join(title.split())[:TITLE_CHARS]
        if not title:
            raise StoreError("a conversation's title cannot be empty")
        sql = "UPDATE conversations SET title = ? WHERE id = ?" + _OWNED + " RETURNING id"
        if not self._run(sql, (title, conversation_id, owner)):
            raise ConversationNotFound(f"no conversation {conversation_id!r}")

    def delete(self, conversation_id: str, owner: str = "") -> None:
        """Remove the conversation and its answers; their bytes are overwritten in the file."""
        sql = "DELETE FROM conversations WHERE id = ?" + _OWNED + " RETURNING id"
        if not self._run(sql, (conversation_id, owner)):
            raise ConversationNotFound(f"no conversation {conversation_id!r}")
        self._run("PRAGMA wal_checkpoint(TRUNCATE)")  # the write-ahead log held the rows too

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot use the conversations file {self.path}: {exc}") from exc


_OWNED = " AND owner = ?"


class OwnedConversations:
    """One owner's conversations: the store's methods with the owner bound."""

    def __init__(self, store: ConversationStore, owner: str) -> None:
        self.store, self.owner = store, owner

    def create(self, first_question: str, scope: Sequence[str] = ()) -> str:
        return self.store.create(first_question, scope, self.owner)

    def add(self, conversation_id: str, answer: Answer, scope: Sequence[str] = ()) -> int:
        return self.store.add(conversation_id, answer, scope, self.owner)

    def list(self) -> list[ConversationInfo]:
        return self.store.list(self.owner)

    def get(self, conversation_id: str) -> Conversation:
        return self.store.get(conversation_id, self.owner)

    def rename(self, conversation_id: str, title: str) -> None:
        self.store.rename(conversation_id, title, self.owner)

    def delete(self, conversation_id: str) -> None:
        self.store.delete(conversation_id, self.owner)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")  # orders two turns of one second


# -- answers as records -------------------------------------------------------------------------------------


def from_record(cls: type, data: Any) -> Any:
    """A dataclass (nested dataclasses, lists and optional fields included) from ``dataclasses.asdict`` output;
    fields the record lacks take their defaults, fields the class no longer has are ignored."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            values[f.name] = _value(hints[f.name], data[f.name])
    return cls(**values)


def _value(hint: Any, data: Any) -> Any:
    if data is None:
        return None
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        return _value(options[0], data) if len(options) == 1 else data
    if origin in (list, Iterable, Sequence):
        (item,) = typing.get_args(hint)
        return [_value(item, x) for x in data]
    if dataclasses.is_dataclass(hint):
        return from_record(hint, data)
    return data


# -- export ---------------------------------------------------------------------------------------------------


def conversation_markdown(conversation: Conversation) -> str:
    """The conversation as Markdown: each question, its answer, and the passages it cites resolved to file,
    page and the passage's words (the uncited ones listed after, for the record)."""
    info = conversation.info
    lines = [f"# {info.title}", "", f"_{info.created_at[:16].replace('T', ' ')} UTC · {info.turns} question(s)_"]
    if conversation.scope:
        lines.append(f"_Asked in: {', '.join(conversation.scope)}_")
    for answer in conversation.answers:
        lines += ["", f"## {answer.question}", "", answer.display_text if answer.found else answer.text, ""]
        for source in answer.sources_for_display:
            p = source.passage
            where = f"{p.source}, page {p.page}" if p.page else p.source
            mark = "cited" if source.cited else "not cited"
            excerpt = " ".join(p.text.split())
            excerpt = excerpt if len(excerpt) <= 300 else excerpt[:297] + "..."
            lines.append(f"- [{source.number}] **{where}** ({mark}): > {excerpt}")
    return "\n".join(lines) + "\n"
