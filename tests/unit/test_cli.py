"""``python -m ingest`` as a user meets it: exit codes, one-line errors, dry run, summary."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def ingest_cli(*args: str, cwd: Path = REPO, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")} | (env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def test_dry_run_lists_what_would_be_added_and_writes_nothing(tmp_path):
    store = tmp_path / "store"
    out = ingest_cli(str(REPO / "data"), "--store", str(store), "--dry-run")
    assert out.returncode == 0, out.stderr
    assert "Dry run" in out.stdout and "would add: politique-teletravail.pdf" in out.stdout
    again = ingest_cli(str(REPO / "data"), "--store", str(store), "--dry-run")
    assert "would add: politique-teletravail.pdf" in again.stdout  # the first dry run stored nothing


def test_only_bad_files_exit_1_with_each_reason(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.pdf").write_bytes(b"")
    (docs / "notes.xyz").write_text("?")
    out = ingest_cli(str(docs), "--store", str(tmp_path / "store"), "-q")
    assert out.returncode == 1
    assert "failed  empty.pdf: empty file (0 bytes)" in out.stdout
    assert "skipped notes.xyz: unsupported file type '.xyz'" in out.stdout


def test_missing_folder_is_one_clear_line_and_exit_2(tmp_path):
    out = ingest_cli(str(tmp_path / "nope"), "--store", str(tmp_path / "store"))
    assert out.returncode == 2 and "error: no such file or folder" in out.stderr
    assert "Traceback" not in out.stderr


def test_bad_settings_are_one_clear_line_and_exit_2(tmp_path):
    out = ingest_cli(str(REPO / "data"), env_extra={"SOURCIER_CHUNKING__CHUNK_TOKENS": "lots"})
    assert out.returncode == 2 and "invalid settings" in out.stderr and "SOURCIER_CHUNKING__CHUNK_TOKENS" in out.stderr


def test_chunk_size_beyond_the_model_limit_is_refused(tmp_path):
    out = ingest_cli(
        str(REPO / "data"), "--store", str(tmp_path / "s"), env_extra={"SOURCIER_CHUNKING__CHUNK_TOKENS": "400"}
    )
    assert out.returncode == 2 and "exceeds what the embedding model all-MiniLM-L6-v2 reads (254 tokens)" in out.stderr


def test_forget_flag_removes_a_folder(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.pdf").write_bytes(b"")
    out = ingest_cli("--forget", str(docs), "--store", str(tmp_path / "store"))
    assert out.returncode == 0 and f"removed 0 chunks ingested from {docs}" in out.stdout


def test_json_report_for_scripts(tmp_path):
    import json

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "empty.txt").write_bytes(b"")
    out = ingest_cli(str(docs), "--store", str(tmp_path / "store"), "--json")
    report = json.loads(out.stdout)
    assert out.returncode == 1 and report["ok"] is False
    assert report["failed"] == [{"source": "empty.txt", "reason": "empty file (0 bytes)"}]


def rag_cli(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    return subprocess.run([sys.executable, "-m", "rag", *args], cwd=REPO, capture_output=True, text=True, env=env)


def test_asking_an_empty_store_says_to_ingest_first(tmp_path):
    out = rag_cli("--store", str(tmp_path / "empty"), "ask", "anything?")
    assert out.returncode == 2 and "run python -m ingest first" in out.stderr
    assert f"no store at {tmp_path / 'empty'}" in out.stderr
    assert not (tmp_path / "empty").exists()  # issue 38: asking created a store there first
    (tmp_path / "made").mkdir()
    empty_folder = rag_cli("--store", str(tmp_path / "made"), "ask", "anything?")
    assert empty_folder.returncode == 2 and "run python -m ingest first" in empty_folder.stderr


def test_asking_with_a_missing_model_says_which_file(tmp_path):
    store = tmp_path / "store"
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text("Herons nest in colonies.", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env["SOURCIER_LLM__MODEL_PATH"] = str(tmp_path / "missing.gguf")
    subprocess.run([sys.executable, "-m", "ingest", str(docs), "--store", str(store), "-q"], cwd=REPO, env=env)
    out = subprocess.run(
        [sys.executable, "-m", "rag", "--store", str(store), "ask", "Where do herons nest?"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2 and f"model file not found: {tmp_path / 'missing.gguf'}" in out.stderr


def test_an_empty_question_is_refused_before_loading_anything(tmp_path):
    out = rag_cli("--store", str(tmp_path / "empty"), "ask", "   ")
    assert out.returncode == 2 and out.stderr.strip() == "error: the question is empty"


def test_asking_in_a_document_the_store_does_not_hold_is_refused_before_the_model(tmp_path):
    store, docs = tmp_path / "store", tmp_path / "docs"
    docs.mkdir()
    (docs / "herons.txt").write_text("Herons nest in colonies.", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env["SOURCIER_LLM__MODEL_PATH"] = str(tmp_path / "missing.gguf")  # reached only after the scope
    subprocess.run([sys.executable, "-m", "ingest", str(docs), "--store", str(store), "-q"], cwd=REPO, env=env)
    out = subprocess.run(
        [sys.executable, "-m", "rag", "--store", str(store), "ask", "--in", "egrets.txt", "Where do herons nest?"],
        cwd=REPO,
        capture_output=True,
        text=True,
        env=env,
    )
    assert out.returncode == 2
    assert "no document or folder in the store matches 'egrets.txt'" in out.stderr
    assert "missing.gguf" not in out.stderr


def test_an_error_said_while_the_model_loads_in_a_thread_is_not_lost(capfd):
    """llama.cpp points the process's stderr at /dev/null while it loads; the CLI's error waits for it (the
    read-only store's error vanished about one run in two while the model loaded beside the store's opening)."""
    import threading
    import time

    from devkit.models import smollm_path
    from rag.__main__ import say_error
    from rag.llm.local import open_gguf
    from rag.settings import Settings

    settings, done, loads_done = Settings(), threading.Event(), []

    def loads() -> None:
        while not done.is_set():
            open_gguf(smollm_path(), settings, vocab_only=True)
            loads_done.append(1)

    loader = threading.Thread(target=loads)
    loader.start()
    said = 0
    try:
        while len(loads_done) < 10:
            say_error(RuntimeError(f"said {said}"))
            said += 1
            time.sleep(0.0005)
    finally:
        done.set()
        loader.join()
    lines = capfd.readouterr().err.splitlines()
    assert [line for line in lines if line.startswith("error: said")] == [f"error: said {i}" for i in range(said)]
