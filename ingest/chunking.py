"""Pages -> chunks that fit the embedding model and remember exactly where they came from."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from langchain_text_splitters import RecursiveCharacterTextSplitter

from ingest.readers import Page
from rag.embedding import TokenCounter

# Bump when the way chunks are cut changes, so stores built the old way are re-chunked.
CHUNKER_VERSION = "1"

_SEPARATORS = ["\n\n", "\n", ". ", "? ", "! ", "; ", ", ", " ", ""]


@dataclass(frozen=True)
class Chunk:
    """A piece of one page: ``text == page_text[start:end]``."""

    page: int
    start: int
    end: int
    text: str


def pipeline_signature(model_name: str, chunk_tokens: int, overlap_tokens: int) -> str:
    """Identifies how chunks were made; a store built another way is re-ingested."""
    raw = f"{CHUNKER_VERSION}|{model_name}|{chunk_tokens}|{overlap_tokens}"
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
    for page in pages:
        for start, end in _spans(page.text, splitter.split_text(page.text)):
            chunks.extend(_bounded(page, start, end, counter, chunk_tokens))
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


def _bounded(page: Page, start: int, end: int, counter: TokenCounter, limit: int) -> list[Chunk]:
    """Guarantee the token bound even for text the splitter could not cut (e.g. one huge word)."""
    text = page.text[start:end]
    if counter.count(text) <= limit:
        return [Chunk(page.number, start, end, text)]
    out = []
    for s, e in counter.split_offsets(text, limit):
        piece = text[s:e]
        if piece.strip():
            out.append(Chunk(page.number, start + s, start + e, piece))
    return out


def chunk_id(root: str, source: str, chunk: Chunk) -> str:
    """Derived from the chunk's place and content: the same chunk always gets the same id."""
    h = hashlib.sha256()
    for part in (root, source, str(chunk.page), str(chunk.start), str(chunk.end), chunk.text):
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]


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
) -> dict[str, Any]:
    """Everything a citation needs, plus what incremental ingest checks (hash, pipeline, count)."""
    return {
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
