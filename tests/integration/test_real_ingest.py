"""The real thing: the packaged all-MiniLM-L6-v2, the real CLI, the real GGUF files, a real Chroma store."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from devkit.models import smollm_path
from rag.search.store import drop_cached_stores
from tests.conftest import REPO, SAMPLE_DATA
from tests.fakes import assert_same_indexes, store_snapshot

pytestmark = pytest.mark.integration


def cli(*args: str, cwd: Path = REPO, importtime: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    cmd = [sys.executable, *(["-X", "importtime"] if importtime else []), "-m", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)


def open_real_store(store_dir: Path):
    from rag.models.embedding import embedding_model_info
    from rag.search.store import open_store
    from rag.settings import PathSettings, Settings

    settings = Settings(paths=PathSettings(store_dir=store_dir))
    drop_cached_stores()
    return settings, open_store(settings, embedding_model_info(settings))


@pytest.fixture(scope="module")
def sample_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("real") / "store"
    out = cli("ingest", str(SAMPLE_DATA), "--store", str(store))
    assert out.returncode == 0, out.stderr + out.stdout
    assert "added" in out.stdout and "failed" in out.stdout
    return store


def test_cli_ingests_the_samples_with_the_packaged_model(sample_store):
    _, store = open_real_store(sample_store)
    sources = {m["source"] for _, m in store.iter_metadatas()}
    assert sources == {p.name for p in SAMPLE_DATA.iterdir()}
    assert store.collection.metadata["embedding_model"] == "all-MiniLM-L6-v2"


def test_no_chunk_exceeds_what_the_embedding_model_reads(sample_store):
    from sentence_transformers import SentenceTransformer

    from rag.models.embedding import packaged_model_path

    model = SentenceTransformer(str(packaged_model_path()), device="cpu")
    _, store = open_real_store(sample_store)
    docs = store.collection.get(include=["documents"])["documents"]
    lengths = [len(model.tokenizer(d, truncation=False)["input_ids"]) for d in docs]  # with [CLS]/[SEP]
    settings, _ = open_real_store(sample_store)
    assert max(lengths) <= settings.chunking.chunk_tokens + 2 <= model.max_seq_length == 256
    assert max(lengths) > 0.8 * settings.chunking.chunk_tokens  # chunks really use the budget


@pytest.mark.parametrize(
    ("question", "source", "needle"),
    [
        ("How long did the storage outage last?", "incident-postmortem.html", "47 minutes"),
        ("What is the hotel cap per night in Paris?", "travel-expenses.docx", "170 euros"),
        ("Combien de jours par semaine peut-on télétravailler ?", "politique-teletravail.pdf", "trois jours"),
        ("Quelle température atteint le cœur du compost ?", "compost-guide.md", "60 °C"),
    ],
)
def test_a_question_finds_the_passage_that_answers_it(sample_store, question, source, needle):
    from rag.search.retrieval import build_retriever

    settings, _ = open_real_store(sample_store)
    top = build_retriever(settings).search(question)  # what the answer step gives the model (reranked, k)
    assert len(top) == settings.retrieval.k
    assert any(p.source == source and needle in p.text for p in top), [(p.source, p.text[:80]) for p in top]


def test_unchanged_rerun_skips_everything_without_loading_torch(sample_store):
    out = cli("ingest", str(SAMPLE_DATA), "--store", str(sample_store), importtime=True)
    assert out.returncode == 0
    assert "unchanged" in out.stdout and "0 chunks embedded" in out.stdout
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time")}
    assert "torch" not in imported and "sentence_transformers" not in imported


def test_kill_9_of_the_real_cli_is_repaired_by_the_next_run(tmp_path):
    corpus = tmp_path / "corpus"
    shutil.copytree(SAMPLE_DATA, corpus)
    words = (SAMPLE_DATA / "bird-survey-2024.txt").read_text(encoding="utf-8").split()
    for i in range(30):  # enough text (about 400 chunks) to interrupt the run in the middle
        body = " ".join(words[(i * 7 + j) % len(words)] for j in range(2000))
        (corpus / f"notes{i:02}.txt").write_text(f"Notes {i}. {body}", encoding="utf-8")
    store = tmp_path / "store"
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "ingest", str(corpus), "--store", str(store), "-q"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:  # wait until some chunks are written
        sqlite = store / "chroma.sqlite3"
        if sqlite.exists() and sqlite.stat().st_size > 400_000:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "the ingest finished before it could be interrupted"
    started = psutil.Process(proc.pid).children(recursive=True)  # its workers (and multiprocessing's tracker)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    _, alive = psutil.wait_procs(started, timeout=5)
    assert not alive, f"processes of the killed ingest outlived it: {[p.pid for p in alive]}"
    again = cli("ingest", str(corpus), "--store", str(store), "-q")
    assert again.returncode == 0, again.stderr
    clean_store = tmp_path / "clean"
    clean = cli("ingest", str(corpus), "--store", str(clean_store), "-q")
    assert clean.returncode == 0
    _, repaired = open_real_store(store)
    repaired_snap = store_snapshot(repaired)
    _, fresh = open_real_store(clean_store)
    fresh_snap = store_snapshot(fresh)
    assert repaired_snap.keys() == fresh_snap.keys()
    assert_same_indexes(repaired_snap, fresh_snap)
    for cid, (doc, meta, emb) in fresh_snap.items():  # embeddings equal up to float noise across runs
        rdoc, rmeta, remb = repaired_snap[cid]
        assert (rdoc, rmeta) == (doc, meta)
        assert max(abs(a - b) for a, b in zip(emb, remb, strict=True)) < 1e-3


def test_default_gguf_is_assembled_and_verified():
    out = cli("rag", "model")
    assert out.returncode == 0, out.stderr
    path = Path(out.stdout.strip())
    assert path.stat().st_size == 1_117_320_768


@pytest.mark.parametrize("which", ["default", "smollm2"])
def test_the_ggufs_load_in_llama_cpp_with_their_own_chat_template(which):
    import llama_cpp

    path = smollm_path() if which == "smollm2" else REPO / "models" / "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
    if which == "default":
        cli("rag", "model")
    llm = llama_cpp.Llama(model_path=str(path), vocab_only=True, verbose=False)
    assert "<|im_start|>" in llm.metadata["tokenizer.chat_template"]
