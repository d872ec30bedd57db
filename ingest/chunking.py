"""Pages -> chunks that fit the embedding model and remember exactly where they came from."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.readers import Page
from rag.models.embedding import TokenCounter
from rag.text import text_language

# Bump when the way chunks are cut changes, so stores built the old way are re-chunked.
CHUNKER_VERSION = "2"  # 2: dot leaders collapsed to one "…"

_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class Chunk:
    """A piece of one page: ``text == page_text[start:end]``."""

    page: int
    start: int
    end: int
    text: str
    section: str = ""  # the heading in effect where the chunk starts; "" when the document has none


def pipeline_signature(model_name: str, chunk_tokens: int, overlap_tokens: int, context_tokens: int = 0) -> str:
    """Identifies how chunks were made; a store built another way is re-ingested."""
    raw = f"{CHUNKER_VERSION}|{model_name}|{chunk_tokens}|{overlap_tokens}"
    if context_tokens:
        raw += f"|context{context_tokens}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def split_pages(pages: Iterable[Page], counter: TokenCounter, chunk_tokens: int, overlap_tokens: int) -> list[Chunk]:
    """Cut every page into chunks of at most ``chunk_tokens`` tokens of the embedding model."""
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=chunk_tokens,
        chunk_overlap=overlap_tokens,
        length_function=counter.count,
        separators=_SEPARATORS,
        keep_separator="end",
        strip_whitespace=True,
    )
    chunks: list[Chunk] = []
    section = ""  # a section goes on across pages until the next heading
    for page in pages:
        for start, end in _spans(page.text, splitter.split_text(page.text)):
            in_effect = [h for at, h in page.headings if at <= start]
            chunks.extend(_bounded(page, start, end, counter, chunk_tokens, in_effect[-1] if in_effect else section))
        if page.headings:
            section = page.headings[-1][1]
    return chunks


def _spans(text: str, pieces: list[str]) -> Iterable[tuple[int, int]]:
    """Locate each piece in the page (pieces are substrings, in order, possibly overlapping)."""
    cursor = 0
    for piece in pieces:
        start = text.find(piece, cursor)
        if start < 0:
            start = text.find(piece)
        if start < 0:  # cannot happen with the splitter above; never store a wrong span
            raise AssertionError("chunk is not a substring of its page")
        yield start, start + len(piece)
        cursor = start + 1


def _bounded(page: Page, start: int, end: int, counter: TokenCounter, limit: int, section: str) -> list[Chunk]:
    """Guarantee the token bound even for text the splitter could not cut (e.g. one huge word)."""
    text = page.text[start:end]
    if counter.count(text) <= limit:
        return [Chunk(page.number, start, end, text, section)]
    out = []
    for s, e in counter.split_offsets(text, limit):
        piece = text[s:e]
        if piece.strip():
            out.append(Chunk(page.number, start + s, start + e, piece, section))
    return out


def context_headers(chunks: list[Chunk], source: str, title: str, counter: TokenCounter, max_tokens: int) -> list[str]:
    """Each chunk's context header (see :func:`context_header`), cut to ``max_tokens``; all "" when 0."""
    if max_tokens <= 0:
        return ["" for _ in chunks]
    by_section: dict[str, str] = {}
    for section in {c.section for c in chunks}:
        header = context_header(source, title, section)
        if counter.count(header) > max_tokens:
            s, e = counter.split_offsets(header, max_tokens)[0]
            header = header[s:e].rstrip()
        by_section[section] = header
    return [by_section[c.section] for c in chunks]


def context_header(source: str, title: str, section: str) -> str:
    """What a chunk is searched with besides its own words: its document's name (the file's path without
    suffix, so "reports/3M_2018_10K.pdf" says "reports / 3M 2018 10K"), the title the file states and the
    section heading, each left out when an earlier part already says it."""
    name = " / ".join(_humanized(part) for part in PurePosixPath(source).with_suffix("").parts)
    parts: list[str] = []
    for part in (name, title, section):
        part = " ".join(part.split())
        if part and not any(part.casefold() in p.casefold() for p in parts):
            parts.append(part)
    return " — ".join(parts)


def _humanized(name: str) -> str:
    return " ".join(name.replace("_", " ").replace("-", " ").split())


def chunk_ids(root: str, source: str, chunks: list[Chunk], contexts: list[str]) -> list[str]:
    """Each chunk's id, derived from its document and what it is embedded as (its text and context header),
    not from where it sits: text that moves when a line is added above it keeps its id, so it is not
    embedded again (only its page and offsets are rewritten). The n-th repeat of the same text in one
    document gets its own id."""
    seen: dict[tuple[str, str], int] = {}
    ids = []
    for chunk, context in zip(chunks, contexts, strict=True):
        repeat = seen.get((chunk.text, context), 0)
        seen[(chunk.text, context)] = repeat + 1
        h = hashlib.sha256()
        for part in (root, source, chunk.text, context, str(repeat)):
            h.update(part.encode("utf-8", "surrogatepass"))
            h.update(b"\x00")
        ids.append(h.hexdigest()[:32])
    return ids


def chunk_metadata(
    *,
    root: str,
    source: str,
    kind: str,
    file_hash: str,
    pipeline: str,
    chunk: Chunk,
    index: int,
    total: int,
    ingested_at: str,
    context: str = "",
    ocr: bool = False,
    collections: Sequence[str] = (),
) -> dict[str, Any]:
    """Everything a citation needs, plus what incremental ingest checks (hash, pipeline, count), the chunk's
    language ('en' or 'fr', what a question in another language is translated into: ``rag.answering.crosslingual``),
    and the chunk's context header when it has one (searched with it, never shown as part of it), and ``ocr``
    when its page was read by OCR, and the collections its file belongs to (``rag.accounts``) when there are."""
    extra = ({"context": context} if context else {}) | ({"ocr": True} if ocr else {})
    extra |= {"collections": sorted(collections)} if collections else {}
    return extra | {
        "language": text_language(chunk.text),
        "root": root,
        "source": source,
        "kind": kind,
        "page": chunk.page,
        "start": chunk.start,
        "end": chunk.end,
        "chunk_index": index,
        "n_chunks": total,
        "file_hash": file_hash,
        "pipeline": pipeline,
        "ingested_at": ingested_at,
    }
