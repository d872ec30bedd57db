"""A team's people and collections: who may read which documents, kept in one SQLite file beside the store.

- **People** have a name, a role (``admin`` reads everything and manages the rest; ``member`` reads the
  collections granted to them), a password hashed with scrypt (memory-hard, from the standard library), API
  keys (random, only their SHA-256 kept, revocable) and page sessions (expiring tokens, kept the same way).
  Logins are rate-limited per account and per address: after ``FAILURES_ALLOWED`` failures in
  ``FAILURE_WINDOW_S`` the account (or the address) is locked for ``LOCKOUT_S``, and every failure is logged.
- **Collections** are named sets of folders or files on disk. A document belongs to every collection holding
  its file; its chunks carry those collections' ids (metadata ``collections``), and a search made for a
  member is held to their collections by :meth:`Accounts.scope_for` (a :class:`~rag.search.scope.Scope`), inside
  the store and the keyword index (``rag.search.store``, ``rag.search.keyword``).

With no one in the file, sourcier is one person's tool as before: no login, and everything readable.
The file is created readable by this user only.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import logging
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rag.errors import SourcierError
from rag.private_db import open_private
from rag.search.names import absolute_path
from rag.search.scope import Scope

ACCOUNTS_FILE = "accounts.sqlite3"
ROLES = ("admin", "member")
Role = Literal["admin", "member"]
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 10
# scrypt's cost: 128 x N x r bytes = 32 MiB of memory per hash (memory-hard: a guessing rig pays it for every
# guess); kept with each hash, so it can be raised without making anyone change a password.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
FAILURES_ALLOWED = 5  # per account, in FAILURE_WINDOW_S; an address gets ADDRESS_FAILURES_ALLOWED
ADDRESS_FAILURES_ALLOWED = 20
FAILURE_WINDOW_S = 15 * 60.0
LOCKOUT_S = 15 * 60.0
SESSION_S = 8 * 3600.0
KEY_PREFIX = "sk-sourcier-"

log = logging.getLogger("sourcier.accounts")

SCHEMA = (
    "CREATE TABLE IF NOT EXISTS people (name TEXT PRIMARY KEY, role TEXT NOT NULL, password TEXT NOT NULL, "
    "created_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS keys (id TEXT PRIMARY KEY, person TEXT NOT NULL REFERENCES people(name) "
    "ON DELETE CASCADE, digest TEXT NOT NULL UNIQUE, created_at REAL NOT NULL, revoked_at REAL)",
    "CREATE TABLE IF NOT EXISTS sessions (digest TEXT PRIMARY KEY, person TEXT NOT NULL REFERENCES people(name) "
    "ON DELETE CASCADE, created_at REAL NOT NULL, expires_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS failures (subject TEXT PRIMARY KEY, count INTEGER NOT NULL, since REAL NOT NULL, "
    "locked_until REAL NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS collections (id TEXT PRIMARY KEY, name TEXT NOT NULL UNIQUE, created_at REAL NOT NULL)",
    "CREATE TABLE IF NOT EXISTS collection_paths (collection TEXT NOT NULL REFERENCES collections(id) "
    "ON DELETE CASCADE, path TEXT NOT NULL, PRIMARY KEY (collection, path))",
    "CREATE TABLE IF NOT EXISTS grants (collection TEXT NOT NULL REFERENCES collections(id) ON DELETE CASCADE, "
    "person TEXT NOT NULL REFERENCES people(name) ON DELETE CASCADE, PRIMARY KEY (collection, person))",
)


class AccessError(SourcierError):
    """A login, key or session refused, or a change to people or collections that cannot be made."""


class LockedOut(AccessError):
    """Too many failed logins for this account or this address: refused until the lock ends."""


@dataclass(frozen=True)
class Person:
    name: str
    role: Role

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class Collection:
    id: str
    name: str
    paths: tuple[Path, ...]
    readers: tuple[str, ...]


class Accounts:
    """The people and collections of one store; safe across threads (one connection under a lock) and
    processes (SQLite's WAL journal)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self._db = open_private(self.path, SCHEMA)
        except (OSError, sqlite3.Error) as exc:
            raise AccessError(f"cannot open the accounts file {self.path}: {exc}") from exc

    @classmethod
    def of_store(cls, store_dir: Path) -> Accounts:
        return cls(Path(store_dir) / ACCOUNTS_FILE)

    @classmethod
    def existing(cls, store_dir: Path) -> Accounts | None:
        """The store's accounts, or None when it has no accounts file (none is created to find out)."""
        path = Path(store_dir) / ACCOUNTS_FILE
        return cls(path) if path.exists() else None

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- people -----------------------------------------------------------------------------------------

    def configured(self) -> bool:
        """Whether anyone has an account (then every read is made on someone's behalf)."""
        return bool(self._run("SELECT EXISTS(SELECT 1 FROM people)")[0][0])

    def add(self, name: str, password: str, role: Role = "member") -> Person:
        if not NAME.match(name):
            raise AccessError(f"{name!r}: a name is 1-64 letters, digits or . _ @ - (starting with a letter or digit)")
        if role not in ROLES:
            raise AccessError(f"{role!r}: a role is one of {', '.join(ROLES)}")
        _check_password(password)
        if self._run("SELECT 1 FROM people WHERE name = ?", (name,)):
            raise AccessError(f"{name}: there is already an account of that name")
        self._run("INSERT INTO people VALUES (?, ?, ?, ?)", (name, role, hash_password(password), time.time()))
        log.info("account %s added (%s)", name, role)
        return Person(name, role)

    def remove(self, name: str) -> None:
        """Remove an account with its keys, sessions and grants (the last admin cannot be removed)."""
        person = self.person(name)
        if person.is_admin and self._admins() == 1 and len(self.people()) > 1:
            raise AccessError(f"{name} is the last admin: make another admin first")
        self._run("DELETE FROM people WHERE name = ?", (name,))
        log.info("account %s removed", name)

    def reset(self, name: str, password: str) -> None:
        """A new password; the account's sessions end (its keys stay: revoke them apart)."""
        self.person(name)
        _check_password(password)
        self._run("UPDATE people SET password = ? WHERE name = ?", (hash_password(password), name))
        self._run("DELETE FROM sessions WHERE person = ?", (name,))
        self._run("DELETE FROM failures WHERE subject = ?", (_account(name),))
        log.info("password of %s reset", name)

    def set_role(self, name: str, role: Role) -> None:
        person = self.person(name)
        if role not in ROLES:
            raise AccessError(f"{role!r}: a role is one of {', '.join(ROLES)}")
        if person.is_admin and role != "admin" and self._admins() == 1:
            raise AccessError(f"{name} is the last admin: make another admin first")
        self._run("UPDATE people SET role = ? WHERE name = ?", (role, name))

    def person(self, name: str) -> Person:
        rows = self._run("SELECT name, role FROM people WHERE name = ?", (name,))
        if not rows:
            raise AccessError(f"no account named {name!r}")
        return Person(rows[0][0], rows[0][1])

    def people(self) -> list[Person]:
        return [Person(n, r) for n, r in self._run("SELECT name, role FROM people ORDER BY name")]

    def _admins(self) -> int:
        return int(self._run("SELECT count(*) FROM people WHERE role = 'admin'")[0][0])

    # -- logging in -------------------------------------------------------------------------------------

    def login(self, name: str, password: str, address: str = "") -> Person:
        """The person these credentials name; AccessError when they do not (the same message whether the
        name exists or not, and the same work: a hash is checked either way), LockedOut while the account or
        the address is locked. A success clears the account's failures."""
        now = time.time()
        for subject in (_account(name), _address(address)):
            until = self._locked_until(subject, now)
            if until:
                log.warning("login refused for %s from %s: %s locked for %.0f s", name, address, subject, until - now)
                raise LockedOut(f"too many failed logins: try again in {max(1, round((until - now) / 60))} min")
        rows = self._run("SELECT role, password FROM people WHERE name = ?", (name,))
        stored = rows[0][1] if rows else _dummy_hash()
        if not verify_password(password, stored) or not rows:
            self._failed(name, address, now)
            raise AccessError("wrong name or password")
        self._run("DELETE FROM failures WHERE subject = ?", (_account(name),))
        log.info("login of %s from %s", name, address or "?")
        return Person(name, rows[0][0])

    def _locked_until(self, subject: str, now: float) -> float:
        rows = self._run("SELECT locked_until FROM failures WHERE subject = ?", (subject,))
        return rows[0][0] if rows and rows[0][0] > now else 0.0

    def _failed(self, name: str, address: str, now: float) -> None:
        for subject, allowed in ((_account(name), FAILURES_ALLOWED), (_address(address), ADDRESS_FAILURES_ALLOWED)):
            rows = self._run("SELECT count, since FROM failures WHERE subject = ?", (subject,))
            count, since = (rows[0][0] + 1, rows[0][1]) if rows and now - rows[0][1] < FAILURE_WINDOW_S else (1, now)
            locked = now + LOCKOUT_S if count >= allowed else 0.0
            self._run("INSERT OR REPLACE INTO failures VALUES (?, ?, ?, ?)", (subject, count, since, locked))
            if locked:
                log.warning("%s locked for %.0f s after %d failed logins", subject, LOCKOUT_S, count)
        log.warning("failed login for %s from %s", name, address or "?")

    # -- sessions (the page) and keys (the API) ---------------------------------------------------------

    def open_session(self, person: Person, lifetime_s: float = SESSION_S) -> str:
        """A new session token for the page (only its digest is kept); it ends after ``lifetime_s``."""
        token = secrets.token_urlsafe(32)
        now = time.time()
        self._run("DELETE FROM sessions WHERE expires_at < ?", (now,))
        self._run("INSERT INTO sessions VALUES (?, ?, ?, ?)", (_digest(token), person.name, now, now + lifetime_s))
        return token

    def session(self, token: str) -> Person:
        """The person of a live session; AccessError when it is unknown, ended or expired."""
        rows = self._run(
            "SELECT p.name, p.role FROM sessions s JOIN people p ON p.name = s.person "
            "WHERE s.digest = ? AND s.expires_at > ?",
            (_digest(token), time.time()),
        )
        if not rows:
            raise AccessError("the session has ended: log in again")
        return Person(rows[0][0], rows[0][1])

    def close_session(self, token: str) -> None:
        self._run("DELETE FROM sessions WHERE digest = ?", (_digest(token),))

    def new_key(self, name: str) -> tuple[str, str]:
        """A new API key for ``name``: (its id, the key). The key is shown once: only its digest is kept."""
        self.person(name)
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        ident = "key-" + secrets.token_hex(4)
        self._run("INSERT INTO keys VALUES (?, ?, ?, ?, NULL)", (ident, name, _digest(key), time.time()))
        log.info("API key %s made for %s", ident, name)
        return ident, key

    def revoke_key(self, ident: str) -> None:
        if not self._run("UPDATE keys SET revoked_at = ? WHERE id = ? RETURNING id", (time.time(), ident)):
            raise AccessError(f"no API key {ident!r}")
        log.info("API key %s revoked", ident)

    def keys(self, name: str | None = None) -> list[tuple[str, str, float, float | None]]:
        """(id, person, made at, revoked at) of the keys (of ``name``)."""
        sql = "SELECT id, person, created_at, revoked_at FROM keys"
        rows = self._run(sql + " WHERE person = ? ORDER BY created_at", (name,)) if name else self._run(sql)
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def key_holder(self, key: str) -> Person | None:
        """The person of a live API key; None for an unknown or revoked one."""
        rows = self._run(
            "SELECT p.name, p.role FROM keys k JOIN people p ON p.name = k.person "
            "WHERE k.digest = ? AND k.revoked_at IS NULL",
            (_digest(key),),
        )
        return Person(rows[0][0], rows[0][1]) if rows else None

    # -- collections --------------------------------------------------------------------------------------

    def create_collection(self, name: str, paths: Sequence[Path]) -> Collection:
        if not NAME.match(name):
            raise AccessError(f"{name!r}: a collection's name is 1-64 letters, digits or . _ @ -")
        if self._run("SELECT 1 FROM collections WHERE name = ?", (name,)):
            raise AccessError(f"there is already a collection named {name!r}")
        ident = "col-" + secrets.token_hex(4)
        self._run("INSERT INTO collections VALUES (?, ?, ?)", (ident, name, time.time()))
        self.add_paths(name, paths)
        log.info("collection %s (%s) created", name, ident)
        return self.collection(name)

    def add_paths(self, name: str, paths: Sequence[Path]) -> None:
        ident = self.collection(name).id
        for path in paths:
            if not Path(path).expanduser().exists():
                raise AccessError(f"{path}: no such file or folder")
        self._many(
            "INSERT OR IGNORE INTO collection_paths VALUES (?, ?)",
            [(ident, str(absolute_path(Path(p).expanduser()))) for p in paths],
        )

    def remove_collection(self, name: str) -> None:
        self._run("DELETE FROM collections WHERE id = ?", (self.collection(name).id,))
        log.info("collection %s removed", name)

    def grant(self, name: str, person: str) -> None:
        ident = self.collection(name).id
        self.person(person)
        self._run("INSERT OR IGNORE INTO grants VALUES (?, ?)", (ident, person))
        log.info("%s may read collection %s", person, name)

    def revoke(self, name: str, person: str) -> None:
        ident = self.collection(name).id
        if not self._run("DELETE FROM grants WHERE collection = ? AND person = ? RETURNING person", (ident, person)):
            raise AccessError(f"{person} cannot read collection {name!r} already")
        log.info("%s may no longer read collection %s", person, name)

    def collection(self, name: str) -> Collection:
        found = [c for c in self.collections() if c.name == name or c.id == name]
        if not found:
            raise AccessError(f"no collection named {name!r}")
        return found[0]

    def collections(self) -> list[Collection]:
        paths: dict[str, list[Path]] = {}
        for ident, path in self._run("SELECT collection, path FROM collection_paths ORDER BY path"):
            paths.setdefault(ident, []).append(Path(path))
        readers: dict[str, list[str]] = {}
        for ident, person in self._run("SELECT collection, person FROM grants ORDER BY person"):
            readers.setdefault(ident, []).append(person)
        return [
            Collection(ident, name, tuple(paths.get(ident, ())), tuple(readers.get(ident, ())))
            for ident, name in self._run("SELECT id, name FROM collections ORDER BY name")
        ]

    def collections_holding(self, path: Path) -> list[str]:
        """The ids of the collections one of whose folders (or files) holds the file at ``path``."""
        return holding([(c.id, held) for c in self.collections() for held in c.paths], path)

    def readable(self, person: Person) -> list[Collection]:
        """The collections ``person`` may read (every one for an admin)."""
        return [c for c in self.collections() if person.is_admin or person.name in c.readers]

    def scope_for(self, person: Person | None) -> Scope | None:
        """What a search made for ``person`` may read: None (everything) for an admin, or when no one has an
        account (one person's install) and no person is given; else their collections (maybe none)."""
        if person is None:
            if self.configured():
                raise AccessError("this install has accounts: say who is asking (log in, or --user NAME)")
            return None
        if person.is_admin:
            return None
        return Scope(collections=frozenset(c.id for c in self.readable(person)))

    # -- the file ---------------------------------------------------------------------------------------

    def _run(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            with self._lock:
                return self._db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            raise AccessError(f"cannot use the accounts file {self.path}: {exc}") from exc

    def _many(self, sql: str, rows: Iterable[Sequence[object]]) -> None:
        try:
            with self._lock, self._db:
                self._db.executemany(sql, rows)
        except sqlite3.Error as exc:
            raise AccessError(f"cannot use the accounts file {self.path}: {exc}") from exc


def readable_by(store_dir: Path, user: str | None) -> Scope | None:
    """What account ``user`` may read in the store (None: everything, for no user named: the store's owner at
    a terminal or in their own code)."""
    if user is None:
        return None
    accounts = Accounts.existing(store_dir)
    if accounts is None:
        raise AccessError(f"user {user!r}: this store has no accounts (sourcier users add)")
    try:
        return accounts.scope_for(accounts.person(user))
    finally:
        accounts.close()


def collections_of(store_dir: Path, user: str | None) -> dict[str, str]:
    """name -> id of the collections ``user`` reads (all of them for no user: the store's owner); {} when the
    store has no accounts."""
    accounts = Accounts.existing(store_dir)
    if accounts is None:
        return {}
    try:
        found = accounts.collections() if user is None else accounts.readable(accounts.person(user))
        return {c.name: c.id for c in found}
    finally:
        accounts.close()


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only."""
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, store_dir: Path, what: str, key_set: bool = False) -> None:
    """Refuse to serve ``what`` ("the page", "the API") beyond this machine while the store has no accounts:
    everyone who reaches it would read every document. ``key_set``: the API's one-person ``server.api_key``,
    which stands in for accounts."""
    if is_loopback(host) or key_set:
        return
    accounts = Accounts.existing(store_dir)
    try:
        if accounts is not None and accounts.configured():
            return
    finally:
        if accounts is not None:
            accounts.close()
    raise AccessError(
        f"{what} would listen on {host} with no accounts: anyone who reaches it would read every document. "
        f"Add an admin first (sourcier users add NAME --admin), or listen on 127.0.0.1"
    )


def collection_paths(store_dir: Path) -> list[tuple[str, Path]] | None:
    """(collection id, folder or file) of every collection of the store's accounts file; None when the store
    has no accounts file (nothing is created to find out)."""
    accounts = Accounts.existing(store_dir)
    if accounts is None:
        return None
    try:
        return [(c.id, held) for c in accounts.collections() for held in c.paths]
    finally:
        accounts.close()


def holding(paths: Iterable[tuple[str, Path]], file: Path) -> list[str]:
    """The ids, sorted, of the collections among ``paths`` (see :func:`collection_paths`) holding ``file``."""
    where = absolute_path(file)
    return sorted({ident for ident, held in paths if where == held or where.is_relative_to(held)})


def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, maxmem=2**27, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        kind, n, r, p, salt, digest = stored.split("$")
        found = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), maxmem=2**27, dklen=32
        )
    except (ValueError, TypeError):
        return False
    return kind == "scrypt" and hmac.compare_digest(found.hex(), digest)


@functools.cache
def _dummy_hash() -> str:
    """A hash no password matches: an unknown name costs the same check as a known one."""
    return hash_password(secrets.token_hex(16))


def _check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AccessError(f"a password has at least {MIN_PASSWORD} characters")


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _account(name: str) -> str:
    return f"account:{name}"


def _address(address: str) -> str:
    return f"address:{address or '?'}"
