"""Beyond one machine, for real: a Chroma server (`chroma run`), llama-cpp-python's OpenAI-compatible
server with the default GGUF, and our own API (`python -m rag serve`), all on 127.0.0.1, started here
and stopped by their process ids.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from devkit.processes import free_port, start, stop, wait_for
from rag.settings import Settings
from tests.conftest import SAMPLE_DATA, make_settings
from tests.fakes import fake_ingestor, store_snapshot
from tests.integration.test_real_ingest import cli

pytestmark = pytest.mark.integration
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def chroma_port(tmp_path_factory) -> Iterator[int]:
    port = free_port()
    folder = tmp_path_factory.mktemp("chroma-server")
    proc = start([str(BIN / "chroma"), "run", "--path", str(folder / "db"), "--host", "127.0.0.1", "--port", str(port)])
    try:
        wait_for(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc)
        yield port
    finally:
        stop(proc)


@contextmanager
def llama_cpp_server(model: str | Path) -> Iterator[str]:
    """llama-cpp-python's OpenAI-compatible server for ``model`` on a free port; yields its base URL (.../v1)."""
    port = free_port()
    proc = start(
        [
            sys.executable, "-m", "llama_cpp.server", "--model", str(model),
            "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "4096",
            "--n_threads", "2", "--n_threads_batch", "2", "--verbose", "False",
        ]
    )  # fmt: skip
    try:
        wait_for(f"http://127.0.0.1:{port}/v1/models", proc)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def llm_url() -> Iterator[str]:
    model = cli("rag", "model")
    assert model.returncode == 0, model.stderr
    with llama_cpp_server(model.stdout.strip().splitlines()[-1]) as url:
        yield url


def server_env(chroma_port: int, llm_url: str, collection: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env.update(
        {
            "SOURCIER_STORE__MODE": "http",
            "SOURCIER_STORE__HOST": "127.0.0.1",
            "SOURCIER_STORE__PORT": str(chroma_port),
            "SOURCIER_STORE__COLLECTION": collection,
            "SOURCIER_LLM__BACKEND": "server",
            "SOURCIER_LLM__SERVER_URL": llm_url,
            **extra,
        }
    )
    return env


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def ingested(chroma_port, llm_url, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """The sample documents ingested into the Chroma server (through the CLI, as a user would)."""
    home = tmp_path_factory.mktemp("server-home")
    docs = home / "docs"
    shutil.copytree(SAMPLE_DATA, docs)
    env = server_env(chroma_port, llm_url, "samples", SOURCIER_PATHS__DOCS_DIR=str(docs))
    first = run(["ingest", str(docs)], env, home)
    assert first.returncode == 0, first.stderr
    return home, env


def ingest_report(env: dict[str, str], home: Path) -> dict:
    out = run(["ingest", "--json", str(home / "docs")], env, home)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_ingest_into_a_chroma_server_is_incremental_with_deletions(ingested):
    home, env = ingested
    docs = home / "docs"
    again = ingest_report(env, home)
    assert len(again["unchanged"]) == 5 and not again["added"] and again["chunks_written"] == 0
    extra = docs / "extra-note.txt"
    extra.write_text("The badge office opens at 8:15 on weekdays.", encoding="utf-8")
    assert ingest_report(env, home)["added"] == ["extra-note.txt"]
    extra.unlink()
    removed = ingest_report(env, home)
    assert removed["removed"] == ["extra-note.txt"] and removed["chunks_removed"] >= 1
    assert not (home / "vectorstore" / "chroma.sqlite3").exists()  # nothing went to a local store


def test_ask_through_both_servers_cites_the_passage_that_holds_the_answer(ingested):
    home, env = ingested
    env = {**env, "SOURCIER_LLM__SERVER_GRAMMAR": "false"}  # unconstrained: parsed and checked after the fact
    out = run(["rag", "ask", "--json", "How many species were recorded in the bird survey?"], env, home)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    assert answer["found"] and "61" in answer["text"], answer["text"]
    cited = [answer["sources"][n - 1] for n in answer["cited"]]
    assert any("61 species" in s["text"] for s in cited), answer["text"]
    assert all(1 <= c["number"] <= len(answer["sources"]) for c in answer["citations"])
    assert answer["answerability"] is not None and answer["answerability"] >= 0.6  # from the server's logprobs


def test_the_servers_grammar_holds_the_quote_to_the_passages_words(ingested):
    home, env = ingested
    env = {**env, "SOURCIER_LLM__SERVER_GRAMMAR": "true"}
    out = run(["rag", "ask", "--json", "How many species were recorded in the bird survey?"], env, home)
    assert out.returncode == 0, out.stderr
    answer = json.loads(out.stdout)
    quote = answer["quote"]
    assert answer["found"] and quote and quote["start"] is not None, answer
    passage = answer["sources"][quote["number"] - 1]["text"]
    assert "61" in passage[quote["start"] : quote["end"]] and answer["cited"] == [quote["number"]], answer


def test_a_question_the_documents_cannot_answer_is_declined_over_the_servers(ingested):
    home, env = ingested
    out = run(["rag", "ask", "--json", "What is the capital of Australia?"], env, home)
    assert out.returncode == 1, out.stdout + out.stderr
    assert json.loads(out.stdout)["found"] is False


def test_servers_that_are_down_are_clear_errors_not_hangs(ingested):
    home, env = ingested
    closed = free_port()
    t0 = time.monotonic()
    llm_down = run(
        ["rag", "ask", "What is the hotel cap?"],
        {**env, "SOURCIER_LLM__SERVER_URL": f"http://127.0.0.1:{closed}/v1"},
        home,
    )
    assert llm_down.returncode == 2 and "cannot reach the LLM server" in llm_down.stderr, llm_down.stderr
    store_down = run(["rag", "ask", "What is the hotel cap?"], {**env, "SOURCIER_STORE__PORT": str(closed)}, home)
    assert store_down.returncode == 2 and "Chroma server" in store_down.stderr, store_down.stderr
    assert time.monotonic() - t0 < 120


@pytest.fixture(scope="module")
def api(ingested) -> Iterator[tuple[str, dict[str, str], Path]]:
    home, env = ingested
    port = free_port()
    proc = start(
        [sys.executable, "-m", "rag", "serve", "--port", str(port)],
        env={**env, "SOURCIER_SERVER__API_KEY": "team-key"},
        cwd=home,
    )
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}", {"Authorization": "Bearer team-key"}, home
    finally:
        stop(proc)


def test_our_api_refuses_a_bad_key(api):
    base, _, _ = api
    for headers in ({}, {"Authorization": "Bearer nope"}):
        reply = httpx.post(
            f"{base}/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]}, headers=headers
        )
        assert reply.status_code == 401 and reply.json()["error"]["type"] == "invalid_api_key"


def test_our_api_answers_with_sources_plain_and_streamed(api):
    base, key, _ = api
    question = {"messages": [{"role": "user", "content": "What is the hotel cap per night in Paris?"}]}
    body = httpx.post(f"{base}/v1/chat/completions", json=question, headers=key, timeout=300).json()
    text = body["choices"][0]["message"]["content"]
    assert body["found"] and "170" in text, text
    assert any(s["cited"] and "170" in s["text"] for s in body["sources"]), text

    pieces, last = [], None
    with httpx.stream(
        "POST", f"{base}/v1/chat/completions", json={**question, "stream": True}, headers=key, timeout=300
    ) as reply:
        assert reply.status_code == 200
        for line in reply.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            pieces.append(chunk["choices"][0]["delta"].get("content", ""))
            last = chunk
    assert len([p for p in pieces if p]) > 3 and "170" in "".join(pieces)
    assert last["choices"][0]["finish_reason"] == "stop" and any(s["cited"] for s in last["sources"])


def test_our_api_lists_and_ingests_uploaded_documents(api):
    base, key, home = api
    before = httpx.get(f"{base}/v1/documents", headers=key).json()["data"]
    assert {"travel-expenses.docx", "incident-postmortem.html"} <= {d["source"] for d in before}
    note = b"Parking permits for the Lyon office are issued by Claire Dubois on Tuesdays."
    reply = httpx.post(
        f"{base}/v1/documents", files=[("files", ("parking.txt", note, "text/plain"))], headers=key, timeout=300
    ).json()
    assert reply["ingest"]["added"] and not reply["refused"]
    after = {d["source"] for d in httpx.get(f"{base}/v1/documents", headers=key).json()["data"]}
    assert "parking.txt" in after and (home / "docs" / "parking.txt").is_file()


# -- crash safety against the server --------------------------------------------------------------


def http_settings(where: Path, port: int, collection: str) -> Settings:
    settings = make_settings(where)
    settings.store.mode = "http"
    settings.store.port = port
    settings.store.collection = collection
    return settings


def test_the_server_store_class_bounds_requests_and_announces_writes(chroma_port, tmp_path):
    from rag.search import chroma_internals
    from rag.search.store import ServerStore, keyword_index_path, open_store
    from tests.fakes import FAKE_INFO, FakeEmbedder

    settings = http_settings(tmp_path, chroma_port, "modes")
    settings.store.timeout_s = 7.0
    store = open_store(settings, FAKE_INFO)
    assert type(store) is ServerStore and store.system() is None
    assert store.describe() == f"collection 'modes' at 127.0.0.1:{chroma_port}"
    assert chroma_internals.http_session(store.client).timeout.read == 7.0  # a stuck server is an error
    assert keyword_index_path(settings) is None
    before = store.version()
    store.upsert(["a"], [FakeEmbedder().embed_query("hello")], ["hello"], [{"source": "a.txt", "root": "r"}])
    assert store.version() != before
    assert open_store(settings, FAKE_INFO).version() == store.version()  # another replica sees the same marker


def test_kill_9_during_an_ingest_into_the_server_then_rerun_equals_a_clean_ingest(chroma_port, tmp_path, monkeypatch):
    from tests.unit.test_crash_and_lock import build_corpus, finish_ingest, kill_after_random_writes

    corpus = build_corpus(tmp_path / "corpus")
    monkeypatch.setenv("CRASH_CHROMA", f"{chroma_port}:crashy")  # the driver writes to the server
    rng = random.Random(2026)
    store_dir = tmp_path / "crashy" / "store"  # only the lock file lives here in server mode
    kills = sum(kill_after_random_writes(store_dir, corpus, rng) for _ in range(3))
    assert kills >= 2
    finish_ingest(store_dir, corpus, timeout=300)
    crashed = store_snapshot(fake_ingestor(http_settings(tmp_path / "crashy", chroma_port, "crashy"))[0].store)
    clean_ingestor = fake_ingestor(http_settings(tmp_path / "clean", chroma_port, "clean"))[0]
    assert clean_ingestor.run([corpus]).ok
    assert crashed == store_snapshot(clean_ingestor.store)


def test_the_page_answers_over_both_servers_in_a_real_browser(ingested):
    playwright = pytest.importorskip("playwright.sync_api")
    from tests.integration.test_page_browser import (
        ARTIFACTS,
        CHROMIUM,
        ask_in_browser,
        launch_chromium,
        start_page,
    )

    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (bash setup.sh installs it)")
    home, env = ingested
    url, proc = start_page(home, {**env, "SOURCIER_SERVER__PORT": str(free_port()), "SOURCIER_SERVER__LANGUAGE": "en"})
    try:
        with playwright.sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                page = browser.new_page(viewport={"width": 1400, "height": 1000})
                ask_in_browser(page, url, "What is the hotel cap per night in Paris?")
                answer = page.get_by_test_id("stChatMessage").nth(1).inner_text()
                assert "170" in answer, answer
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "page-over-servers.png"), full_page=True)
            finally:
                browser.close()
    finally:
        stop(proc, grace_s=20)


def test_replicas_read_the_ingests_keyword_index_beside_a_chroma_server(chroma_port, tmp_path):
    from rag.search.keyword import SqliteKeywordIndex
    from rag.search.retrieval import Retriever
    from rag.search.store import open_store
    from tests.fakes import FAKE_INFO, FakeEmbedder

    shared = tmp_path / "shared-folder" / "keywords.sqlite3"  # storage the ingest host and replicas share
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE_DATA, docs)
    writer = http_settings(tmp_path / "ingest-host", chroma_port, "shared-keywords")
    writer.paths.keyword_index = shared
    ingestor = fake_ingestor(writer)[0]
    assert ingestor.run([docs]).ok

    replica = http_settings(tmp_path / "replica", chroma_port, "shared-keywords")
    replica.paths.keyword_index = shared
    replica.retrieval.vector = False
    reader = Retriever(open_store(replica, FAKE_INFO), FakeEmbedder(), replica)
    assert isinstance(reader.keyword_index, SqliteKeywordIndex)
    assert set(reader.keyword_index.entries()) == ingestor.store.ids()
    (docs / "owls.txt").write_text("Les chouettes effraies nichent dans les granges.\n", encoding="utf-8")
    assert ingestor.run([docs]).ok
    assert [p.source for p in reader.search("chouettes effraies", k=2)][:1] == ["owls.txt"]  # no rebuild
