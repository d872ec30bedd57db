"""Deterministic stand-ins for the heavy models, for fast unit tests (and the crash-test driver)."""

from __future__ import annotations

import hashlib
import math
import re
import time
from pathlib import Path

from rag.llm.base import ChatModel
from rag.models.embedding import EmbeddingModelInfo

_TOKEN = re.compile(r"\w+|[^\w\s]", re.UNICODE)

FAKE_INFO = EmbeddingModelInfo(name="fake-hash-embedder", path=Path("fake"), dimension=16, max_seq_length=130)


class FakeCounter:
    """One token per word or punctuation mark."""

    def count(self, text: str) -> int:
        return len(_TOKEN.findall(text))

    def split_offsets(self, text: str, max_tokens: int) -> list[tuple[int, int]]:
        spans = [m.span() for m in _TOKEN.finditer(text)]
        return [(g[0][0], g[-1][1]) for g in (spans[i : i + max_tokens] for i in range(0, len(spans), max_tokens))]


class FakeEmbedder:
    """Bag-of-words hashed into 16 dimensions, normalized: similar texts get similar vectors."""

    def __init__(self, delay: float = 0.0) -> None:
        self.info = FAKE_INFO
        self.runtime = "fake"
        self.delay = delay
        self.calls: list[int] = []

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls.append(len(texts))
        if self.delay:
            time.sleep(self.delay)
        return [self._vector(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)

    @staticmethod
    def _vector(text: str) -> list[float]:
        v = [0.0] * FAKE_INFO.dimension
        for word in _TOKEN.findall(text.lower()):
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % FAKE_INFO.dimension] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v] if any(v) else [1.0] + [0.0] * (FAKE_INFO.dimension - 1)


def fake_ingestor(settings, delay: float = 0.0, progress=None):
    """An Ingestor over the real Chroma store in settings, with the fake tokenizer and embedder."""
    from ingest.pipeline import Ingestor
    from rag.search.store import open_store

    embedder = FakeEmbedder(delay)
    ingestor = Ingestor(
        settings,
        open_store(settings, FAKE_INFO),
        FAKE_INFO,
        counter_factory=FakeCounter,
        embedder_factory=lambda: embedder,
        progress=progress,
    )
    return ingestor, embedder


KEYWORD_INDEX = "keyword index"  # the snapshot's entry for the keyword index (never a chunk id: those are hashes)
MULTILINGUAL = "multilingual vectors"  # and for the chunks' multilingual vectors (retrieval.crosslingual_vectors)


def store_snapshot(store) -> dict[str, tuple]:
    """Everything that defines a store's content, minus the ingest time stamp."""
    got = store.collection.get(include=["documents", "metadatas", "embeddings"])
    snap = {}
    for cid, doc, meta, emb in zip(got["ids"], got["documents"], got["metadatas"], got["embeddings"], strict=True):
        meta = _stamped(meta)
        snap[cid] = (doc, tuple(sorted(meta.items())), tuple(round(float(x), 5) for x in emb))
    if store.keywords is not None:  # the keyword index is part of the store's content
        snap[KEYWORD_INDEX] = tuple(sorted(store.keywords.entries().items()))
    if store.crosslingual is not None:  # so are the chunks' multilingual vectors (their ids and metadata)
        got = store.crosslingual.get(include=["metadatas"])
        rows = zip(got["ids"], got["metadatas"], strict=True)
        snap[MULTILINGUAL] = tuple(sorted((cid, tuple(sorted(_stamped(m).items()))) for cid, m in rows))
    return snap


def assert_same_indexes(left: dict, right: dict) -> None:
    """Two snapshots' keyword index and multilingual vectors are the same; both taken out, the rest of each
    snapshot is chunk id -> (text, metadata, vector)."""
    for key in (KEYWORD_INDEX, MULTILINGUAL):
        assert left.pop(key, None) == right.pop(key, None), key


def _stamped(meta: dict) -> dict:
    return {k: v for k, v in meta.items() if k != "ingested_at"}


SPECIAL = {"<s>": 1, "</s>": 2, "<|user|>": 3, "<|assistant|>": 4}
BOS, EOS = 1, 2

# A Llama-style template that writes bos_token itself, and one that does not.
WITH_BOS = (
    "{{ bos_token }}{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}<|assistant|>"
)
WITHOUT_BOS = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{{ eos_token }}{% endfor %}<|assistant|>"


class CharTokenizer:
    """Special tokens are whole; every other character is one token."""

    def __init__(self, metadata: dict[str, str] | None = None) -> None:
        self.metadata = metadata or {}

    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> list[int]:
        s, out = text.decode(), [BOS] if add_bos else []
        i = 0
        while i < len(s):
            hit = next((t for t in SPECIAL if special and s.startswith(t, i)), None)
            if hit:
                out.append(SPECIAL[hit])
                i += len(hit)
            else:
                out.append(1000 + ord(s[i]))
                i += 1
        return out

    def detokenize(self, tokens, prev_tokens=None, special=False) -> bytes:
        names = {v: k for k, v in SPECIAL.items()}
        text = (chr(t - 1000) if t >= 1000 else names[t] if special else "" for t in tokens)
        return "".join(text).encode()

    def token_bos(self) -> int:
        return BOS

    def token_eos(self) -> int:
        return EOS


class FakeLLM(ChatModel):
    """Queued replies, streamed word by word; records the prompts it was given (like llm's MockModel)."""

    def __init__(self, replies: list[str], n_ctx: int = 4096, piece_delay: float = 0.0) -> None:
        from rag.llm import ChatPrompter
        from rag.llm.turns import ModelActivity
        from rag.settings import Settings

        self.settings = Settings()
        self.activity = ModelActivity(exclusive=True)
        self.piece_delay = piece_delay  # seconds per piece, for tests of slow answers
        self.replies = list(replies)
        self.prompts = []
        self.decodings = []
        self.grammars = []
        # Question -> its translation, for the translation prompts of rag.answering.crosslingual (kept apart from the
        # queued replies and the recorded prompts); an unknown question gets an empty reply (not translated).
        self.translations: dict[str, str] = {}
        self.translated: list[str] = []
        self._n_ctx = n_ctx
        self.prompter = ChatPrompter(CharTokenizer(), WITHOUT_BOS, "test", add_bos=False)

    @property
    def n_ctx(self) -> int:
        return self._n_ctx

    def describe(self) -> str:
        return "the fake model"

    answerable = 1.0  # what answerability() reports; tests set it lower to see a decline

    def answerability(self, prompt, cancel=None):
        self.checks = [*getattr(self, "checks", []), prompt]
        return self.answerable

    def stream(self, prompt, max_tokens=None, decoding=None, cancel=None, grammar=None):
        """The next queued reply word by word, holding the model like the real ones (one at a time)."""
        from rag.answering.crosslingual import TRANSLATE_SYSTEM

        with self.activity.hold(cancel) as hold:
            if hold is None:
                return
            if prompt.messages and prompt.messages[0]["content"].startswith(TRANSLATE_SYSTEM[:30]):
                question = prompt.messages[-1]["content"]
                self.translated.append(question)
                yield self.translations.get(question, "")
                return
            self.prompts.append(prompt)
            self.decodings.append(decoding)
            self.grammars.append(grammar)
            words = self.replies.pop(0).split(" ")
            for i, word in enumerate(words):
                if cancel is not None and cancel.cancelled:
                    return
                if self.piece_delay:
                    time.sleep(self.piece_delay)
                hold.progress()
                yield word if i == len(words) - 1 else word + " "


def sentence_holding(retriever, question: str, k: int, words: str, scope=None):
    """(number as given to the model, passage, its sentence holding ``words`` on one line): what a model
    quoting the right passage would copy (asked within ``scope``)."""
    import re

    passages = retriever.search(question, k, scope)
    number, passage = next((n, p) for n, p in enumerate(passages, 1) if words in p.text)
    sentence = next(s for s in re.split(r"(?<=\.)\s+", passage.text) if words in s).replace("\n", " ")
    return number, passage, sentence
