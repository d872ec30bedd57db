"""SQLite files only their owner reads (conversations, accounts): created with mode 600, WAL journal (safe
across the page's and the API's processes), foreign keys on, and deleted rows overwritten (secure_delete)."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Sequence
from pathlib import Path


def open_private(path: Path, schema: Sequence[str]) -> sqlite3.Connection:
    """The file at ``path`` (created readable and writable by this user only), its ``schema`` applied; one
    connection for every thread (its user keeps it under a lock). Raises OSError or sqlite3.Error."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    db = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.execute("PRAGMA secure_delete=ON")
    for statement in schema:
        db.execute(statement)
    return db
