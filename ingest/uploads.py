"""Files given through the page (or the API): safe names, a size limit, never a silent overwrite.

``save_upload`` writes the bytes into the documents folder under a sanitized name; the caller then
ingests the saved file with the same pipeline as ``python -m ingest``. ``remove_document`` takes one
document out of the store and, when it lies in the documents folder, moves its file aside into
``.removed/`` (hidden, so never ingested again; nothing the user gave is deleted). An upload is all or
nothing per file: when its ingest cannot start the files it wrote are taken back (``withdraw``), and a
file whose ingest fails goes into ``.failed/`` (``set_aside``), named in the reply.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from ingest.discover import SUPPORTED_SUFFIXES
from ingest.pipeline import absolute_path, build_ingestor, document_path
from rag.errors import DocumentError
from rag.settings import Settings

MAX_NAME = 120
REMOVED = ".removed"
FAILED = ".failed"  # uploads whose ingest failed: kept aside, never ingested again


class UploadRefused(DocumentError):
    """An upload that is not saved; ``kind`` says why, for a status (the API: 413 or 415)."""

    kind = "refused"


class UploadTooLarge(UploadRefused):
    kind = "too_large"


class NotADocument(UploadRefused):
    kind = "not_a_document"


@dataclass(frozen=True)
class SavedUpload:
    path: Path
    original_name: str
    renamed: bool = False  # saved under another name because a different file had this one
    duplicate: bool = False  # the same bytes were already there under this name: nothing written


def safe_filename(name: str) -> str:
    """A plain file name from whatever a browser sent: no folders, no hidden or control characters."""
    original = name
    name = unicodedata.normalize("NFC", name).replace("\\", "/").split("/")[-1]
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C")
    name = re.sub(r"[^\w .()+,&'-]", "_", name).strip().lstrip(".").strip()
    stem, suffix = os.path.splitext(name)
    if not stem or suffix.lower() not in SUPPORTED_SUFFIXES:
        kinds = ", ".join(sorted(SUPPORTED_SUFFIXES))
        shown = original if len(original) <= 80 else original[:79] + "…"
        raise NotADocument(f"{shown!r}: not a document name this service reads ({kinds})")
    return stem[: MAX_NAME - len(suffix)] + suffix.lower()


def save_upload(data: bytes, name: str, folder: Path, max_mb: float) -> SavedUpload:
    """Save an uploaded file into ``folder``; a different file of the same name is kept, the new one renamed."""
    clean = safe_filename(name)
    if len(data) > max_mb * 1024 * 1024:  # read no further than the limit: its real size is not known
        raise UploadTooLarge(f"{clean}: larger than the upload limit of {max_mb:g} MB (server.upload_max_mb)")
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256(data).hexdigest()
    tmp = folder / f".upload-{digest[:16]}-{os.getpid()}"
    tmp.write_bytes(data)
    try:
        stem, suffix = os.path.splitext(clean)
        for n in range(1, 1000):
            target = folder / (clean if n == 1 else f"{stem} ({n}){suffix}")
            if target.exists():
                if hashlib.sha256(target.read_bytes()).hexdigest() == digest:
                    return SavedUpload(target, name, renamed=n > 1, duplicate=True)
                continue
            try:
                os.link(tmp, target)  # fails if another upload took the name meanwhile: never overwrites
            except FileExistsError:
                continue
            return SavedUpload(target, name, renamed=n > 1)
        raise DocumentError(f"{name}: too many files named {clean} in {folder}")
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()


def withdraw(saved: list[SavedUpload]) -> None:
    """Takes back the files an upload just wrote (not the duplicates: those were there before it), when
    their ingest could not even start (another ingest holds the store)."""
    for s in saved:
        if not s.duplicate:
            with contextlib.suppress(OSError):
                s.path.unlink()


def set_aside(saved: list[SavedUpload], failed_names: set[str]) -> dict[str, str]:
    """Moves each file an upload just wrote whose ingest failed into ``.failed/`` beside it (hidden, so no
    later ingest fails on it again; kept, not deleted). Returns {file name: where it now is, relative}."""
    moved = {}
    for s in saved:
        if s.duplicate or s.path.name not in failed_names or not s.path.exists():
            continue
        aside = s.path.parent / FAILED
        aside.mkdir(exist_ok=True)
        stem, suffix = os.path.splitext(s.path.name)
        target = aside / s.path.name
        n = 1
        while target.exists():
            n += 1
            target = aside / f"{stem} ({n}){suffix}"
        os.replace(s.path, target)
        moved[s.path.name] = f"{FAILED}/{target.name}"
    return moved


def remove_document(settings: Settings, root: str, source: str, *, wait: bool = False) -> int:
    """Remove one document's chunks; move its file aside if it is in the documents folder. Returns chunks."""
    from rag.search.writer_lock import ingest_lock

    with ingest_lock(settings.paths.store_dir, wait=wait):
        store = build_ingestor(settings).store
        stored = store.stored_documents(root).get(source)
        ids = stored.ids if stored else []
        store.delete(ids)
    path = absolute_path(document_path(root, source, settings.paths.store_dir))
    docs = absolute_path(settings.paths.docs_dir)
    if path.is_file() and path.is_relative_to(docs) and REMOVED not in path.relative_to(docs).parts:
        aside = docs / REMOVED / path.relative_to(docs)
        if aside.exists():
            aside = aside.with_name(f"{aside.stem}-{time.strftime('%Y%m%d-%H%M%S')}{aside.suffix}")
        aside.parent.mkdir(parents=True, exist_ok=True)
        path.rename(aside)
    return len(ids)
