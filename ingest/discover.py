"""Find the files to ingest under the paths a user gave, and say what was left out and why."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from rag.search.names import readable_name

SUPPORTED_SUFFIXES = {
    ".pdf": "pdf",
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".html": "html",
    ".htm": "html",
    ".docx": "docx",
    ".png": "image",
    ".jpg": "image",
    ".jpeg": "image",
    ".tif": "image",
    ".tiff": "image",
}


@dataclass(frozen=True)
class SourceFile:
    """A file to ingest: where it is, and its name relative to the ingest root."""

    path: Path
    source: str
    kind: str
    size: int


@dataclass(frozen=True)
class Problem:
    """A file that was skipped (not a document type) or failed (a document that could not be read)."""

    source: str
    reason: str


@dataclass
class Discovery:
    """What one ingest target holds. ``scanned_folder`` tells whether deletions can be detected."""

    root: Path
    scanned_folder: bool
    files: list[SourceFile] = field(default_factory=list)
    skipped: list[Problem] = field(default_factory=list)
    failed: list[Problem] = field(default_factory=list)
    hidden: int = 0


def discover(target: Path, under: Path | None = None) -> Discovery:
    """Walk a folder (following links, never looping) or take one file: named from its own folder, or from
    ``under`` when the file lies inside it (a file added to a folder ingested before: named as its siblings)."""
    target = Path(target)
    if not target.exists() and not target.is_symlink():
        raise FileNotFoundError(f"no such file or folder: {target}")
    if target.is_dir():
        found = Discovery(root=target.absolute(), scanned_folder=True)
        _walk(target, target, found, seen=set())
    else:
        root = target.absolute().parent
        if under is not None and root.is_relative_to(under.absolute()):
            root = under.absolute()
        found = Discovery(root=root, scanned_folder=False)
        _add_file(target, readable_name(target.absolute().relative_to(root).as_posix()), found)
    found.files.sort(key=lambda f: f.source)
    _refuse_same_names(found)
    return found


def _walk(folder: Path, root: Path, found: Discovery, seen: set[tuple[int, int]]) -> None:
    try:
        st = folder.stat()
    except OSError as exc:
        found.failed.append(Problem(_rel(folder, root) or ".", f"cannot open folder: {exc.strerror or exc}"))
        return
    key = (st.st_dev, st.st_ino)
    if key in seen:
        found.skipped.append(Problem(_rel(folder, root), "symbolic link loop (folder already visited)"))
        return
    seen.add(key)
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        found.failed.append(Problem(_rel(folder, root) or ".", f"cannot list folder: {exc.strerror or exc}"))
        return
    for entry in entries:
        path = Path(entry.path)
        if entry.name.startswith("."):
            found.hidden += 1
            continue
        if path.is_dir():
            _walk(path, root, found, seen)
        else:
            _add_file(path, _rel(path, root), found)


def _rel(path: Path, root: Path) -> str:
    """The file's name under the root as the store keeps it (see :mod:`rag.search.names`)."""
    return readable_name(path.relative_to(root).as_posix()) if path != root else ""


def _refuse_same_names(found: Discovery) -> None:
    """Two files whose stored names would be equal (an escaped name and a file literally named like it):
    the second is refused alone, so neither overwrites the other in the store."""
    kept: list[SourceFile] = []
    for f in found.files:
        if kept and kept[-1].source == f.source:
            found.failed.append(
                Problem(f.source, "another file here has the same name once shown readably: rename one of them")
            )
        else:
            kept.append(f)
    found.files = kept


def _add_file(path: Path, source: str, found: Discovery) -> None:
    kind = SUPPORTED_SUFFIXES.get(path.suffix.lower())
    if path.is_symlink() and not path.exists():
        found.failed.append(Problem(source, "broken symbolic link"))
        return
    if kind is None:
        found.skipped.append(Problem(source, f"unsupported file type '{path.suffix or '(none)'}'"))
        return
    try:
        st = path.stat()
    except OSError as exc:
        found.failed.append(Problem(source, f"cannot read file: {exc.strerror or exc}"))
        return
    if not path.is_file():
        found.skipped.append(Problem(source, "not a regular file"))
        return
    found.files.append(SourceFile(path=path, source=source, kind=kind, size=st.st_size))
