"""sourcier's own exceptions: each message says what went wrong and what to do about it."""

from __future__ import annotations


class SourcierError(Exception):
    """Base of every error sourcier raises on purpose; entry points turn it into one line."""


class SettingsError(SourcierError):
    """A setting has a bad value, or the settings file is missing or malformed."""


class ModelFileError(SourcierError):
    """A model file is missing, incomplete, or not what it claims to be."""


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
