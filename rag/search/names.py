"""How the store names files and folders. File names: any name the file system holds, made readable and valid
Unicode without losing a byte, and found again from what is stored.

Linux hands Python a name that is not valid UTF-8 (``caf\\xe9.txt`` written by an older system) with each
undecodable byte as a lone surrogate, which Chroma, the tokenizer and JSON all refuse. Such a name, or one
holding control characters (a newline), is stored escaped: ``\\xNN`` for an undecodable byte (80-ff) or a
control character (00-1f, 7f), ``\\uNNNN`` for a C1 control character, ``\\\\`` for a
backslash. Every other name (accents in NFC or NFD, any script, any length) is kept as it is.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

_ESCAPE = re.compile(r"\\(\\|x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4})")


def needs_escape(name: str) -> bool:
    """True when ``name`` holds an undecodable byte (a lone surrogate) or a control character."""
    return any(_escaped_char(ch) is not None for ch in name)


def readable_name(name: str) -> str:
    """``name`` (as ``os.fsdecode`` gives it) as valid, printable Unicode; unchanged when it already is."""
    if not needs_escape(name):
        return name
    out = []
    for ch in name:
        escaped = _escaped_char(ch)
        out.append("\\\\" if ch == "\\" else escaped if escaped is not None else ch)
    return "".join(out)


def _escaped_char(ch: str) -> str | None:
    code = ord(ch)
    if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte code - 0xDC00
        return f"\\x{code - 0xDC00:02x}"
    if code < 0x20 or code == 0x7F:
        return f"\\x{code:02x}"
    if 0x80 <= code < 0xA0:  # C1 controls: \\u, since \\x80-\\xff are bytes
        return f"\\u{code:04x}"
    return None


def file_name(source: str) -> str:
    """The name on disk that :func:`readable_name` turned into ``source`` (its inverse for escaped names)."""

    def unescape(m: re.Match[str]) -> str:
        token = m.group(1)
        if token == "\\":
            return "\\"
        code = int(token[1:], 16)
        return chr(0xDC00 + code) if token[0] == "x" and code >= 0x80 else chr(code)

    return _ESCAPE.sub(unescape, source)


def source_path(folder: Path, source: str) -> Path:
    """The file a stored ``source`` names under ``folder``: the name itself when such a file exists (most
    names are stored unchanged), else the name it was escaped from."""
    direct = folder / source
    if "\\" not in source or direct.exists():
        return direct
    return folder / file_name(source)


def absolute_path(path: Path) -> Path:
    """``path`` made absolute and normalized ("a/../b" -> "b"), without following symbolic links."""
    return Path(os.path.normpath(Path(path).absolute()))


def root_key(folder: Path, store_dir: Path) -> str:
    """How chunks name the folder they were ingested from.

    Relative to the folder that holds the store when the documents live beside it (the default
    ``data/`` next to ``vectorstore/``), so moving the whole project keeps every chunk valid;
    absolute otherwise.
    """
    folder = absolute_path(folder)
    base = absolute_path(store_dir).parent
    try:
        return folder.relative_to(base).as_posix()
    except ValueError:
        return str(folder)


def resolve_root(key: str, store_dir: Path) -> Path:
    """The folder a chunk's ``root`` names (inverse of :func:`root_key`)."""
    path = Path(key)
    return path if path.is_absolute() else absolute_path(store_dir).parent / path


def document_path(root: str, source: str, store_dir: Path) -> Path:
    """The file on disk a stored document (its ``root`` and ``source``) came from."""
    return source_path(resolve_root(root, store_dir), source)
