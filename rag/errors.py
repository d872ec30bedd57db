"""sourcier's own exceptions: each message says what went wrong and what to do about it."""

from __future__ import annotations


class SourcierError(Exception):
    """Base of every error sourcier raises on purpose; entry points turn it into one line."""


class SettingsError(SourcierError):
    """A setting has a bad value, or the settings file is missing or malformed."""


class ModelFileError(SourcierError):
    """A model file is missing, incomplete, or not what it claims to be."""


class ModelCrashError(SourcierError):
    """The process running the model stopped (a native crash, out of memory, a kill) during a request; it is
    being started again, and the next request is answered by the new one."""


class StoreError(SourcierError):
    """The Chroma store cannot be opened, read or written."""


class StoreMismatchError(StoreError):
    """The store was built with another embedding model than the one configured."""


class IngestLockedError(SourcierError):
    """Another ingest is already writing to the same store."""


class DocumentError(SourcierError):
    """One file could not be turned into text; the message names the reason."""


class LLMServerError(SourcierError):
    """The configured LLM server is unreachable, too slow, or refused the request."""


def store_error_hint(exc: Exception) -> str:
    """What to do about the store errors a user can fix (Chroma's and the keyword index's alike); "" for others."""
    text = str(exc).lower()
    if "disk is full" in text or "no space left" in text:
        return " -- the disk is full: free some space and run the ingest again (what was stored is intact)"
    if "connect" in text or "timed out" in text or "timeout" in text:
        return " -- is the Chroma server running and reachable? (store.host, store.port, store.timeout_s)"
    if "readonly" in text or "read-only" in text or "permission denied" in text:
        return (
            " -- the store folder is read-only (Chroma writes to its database even to read it): make it "
            "writable, or point paths.store_dir elsewhere"
        )
    return ""
