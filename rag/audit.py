"""Who asked what, when, and which sources they were shown or opened: an append-only trail in JSON lines.

One record per line in ``audit.jsonl`` beside the store (readable by this user only), written whole under an
exclusive lock so that the page and the API (separate processes) can share the file. Past ``MAX_BYTES`` the
file is rotated (``audit.jsonl.1`` the newest of the ``KEEP`` kept). Nothing here ever edits or removes a
record; admins read the trail with ``sourcier audit`` or on the page. ``server.audit = false`` turns it off.
"""

from __future__ import annotations

import fcntl
import json
import os
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.errors import StoreError

AUDIT_FILE = "audit.jsonl"
MAX_BYTES = 10 * 2**20
KEEP = 10


class AuditLog:
    def __init__(self, path: Path, max_bytes: int = MAX_BYTES, keep: int = KEEP) -> None:
        self.path = Path(path)
        self.max_bytes, self.keep = max_bytes, keep
        self._lock = threading.Lock()

    @classmethod
    def of_store(cls, store_dir: Path) -> AuditLog:
        return cls(Path(store_dir) / AUDIT_FILE)

    def record(self, event: str, person: str | None, **fields: Any) -> None:
        """Append one record: when (UTC), the event, who (None: the install's owner, without accounts), and
        what (the question, the sources...)."""
        entry = {"at": datetime.now(UTC).isoformat(timespec="milliseconds"), "event": event, "person": person}
        line = (json.dumps(entry | fields, ensure_ascii=False, default=str) + "\n").encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._lock:
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX)
                    if os.fstat(fd).st_size + len(line) > self.max_bytes and self._current(fd):
                        self._rotate()
                        os.close(fd)
                        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                        fcntl.flock(fd, fcntl.LOCK_EX)
                    os.write(fd, line)
                finally:
                    os.close(fd)
        except OSError as exc:
            raise StoreError(f"cannot write the audit log {self.path}: {exc.strerror or exc}") from exc

    def _current(self, fd: int) -> bool:
        """Whether ``fd`` is still the file at ``path`` (another process may have rotated it meanwhile)."""
        try:
            return os.stat(self.path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _rotate(self) -> None:
        oldest = self.path.with_name(f"{self.path.name}.{self.keep}")
        oldest.unlink(missing_ok=True)
        for n in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{n}")
            if older.exists():
                older.rename(self.path.with_name(f"{self.path.name}.{n + 1}"))
        self.path.rename(self.path.with_name(f"{self.path.name}.1"))

    def entries(self) -> Iterator[dict[str, Any]]:
        """Every record kept, oldest first (the rotated files, then the current one)."""
        files = [self.path.with_name(f"{self.path.name}.{n}") for n in range(self.keep, 0, -1)] + [self.path]
        for file in files:
            try:
                lines = file.read_text(encoding="utf-8").splitlines()
            except FileNotFoundError:
                continue
            for line in lines:
                if line.strip():
                    yield json.loads(line)

    def last(self, n: int = 100, person: str | None = None) -> list[dict[str, Any]]:
        """The ``n`` latest records (of ``person``), newest last."""
        found = [e for e in self.entries() if person is None or e.get("person") == person]
        return found[-n:]


class NoAudit(AuditLog):
    """``server.audit = false``: nothing is written."""

    def __init__(self) -> None:
        super().__init__(Path(os.devnull))

    def record(self, event: str, person: str | None, **fields: Any) -> None:
        return None

    def entries(self) -> Iterator[dict[str, Any]]:
        return iter(())


def sources_shown(answer: Any) -> list[dict[str, Any]]:
    """An answer's sources as the trail keeps them: where each is, and whether the answer cited it."""
    return [
        {"number": s.number, "file": s.passage.source, "root": s.passage.root, "page": s.passage.page,
         "chunk_id": s.passage.chunk_id, "cited": s.cited}
        for s in answer.sources
    ]  # fmt: skip
