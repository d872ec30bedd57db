"""No byte leaves the machine: the whole journey with every non-loopback connection refused and recorded.

Every process of the journey (the ingest CLI, the answer CLI with the real default model, the page
server with its real embedder and a real GGUF, driven by a real browser) starts with the socket guard of
``tests.netguard`` installed; the log of refused attempts must stay empty. The same CLI journey also runs
in an empty network namespace (``unshare -n``: only loopback exists), where it must still succeed.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from devkit.processes import free_port, stop
from tests.conftest import REPO, SAMPLE_DATA
from tests.integration.test_page_browser import (
    ask_in_browser,
    launch_chromium,
    page_env,
    start_page,
)
from tests.netguard import guard_env

pytestmark = pytest.mark.integration


def run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


def attempts(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def clean_env() -> dict[str, str]:
    # the user's environment must not be what keeps us offline: drop every offline/telemetry switch
    dropped = ("SOURCIER_", "HF_", "TRANSFORMERS_", "ANONYMIZED_TELEMETRY", "LANGCHAIN_", "LANGSMITH_", "STREAMLIT_")
    return {k: v for k, v in os.environ.items() if not k.startswith(dropped)}


def test_the_guard_catches_a_library_that_connects_out(tmp_path):
    log = tmp_path / "net.log"
    env = guard_env(tmp_path / "site", log, clean_env())
    code = "import urllib.request as u\ntry:\n    u.urlopen('http://example.com', timeout=3)\nexcept OSError: pass"
    run(["-c", code], env, REPO)
    [seen] = attempts(log)
    assert seen["kind"] == "resolve" and "example.com" in seen["target"]


def test_the_whole_journey_makes_no_connection_out(tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    log = tmp_path / "net.log"
    env = guard_env(tmp_path / "site", log, clean_env())
    docs, store = tmp_path / "docs", tmp_path / "store"
    shutil.copytree(SAMPLE_DATA, docs)

    ingest = run(["-m", "ingest", str(docs), "--store", str(store), "-q"], env, tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    ask = run(["-m", "rag", "--store", str(store), "ask", "What is the hotel cap per night in Paris?"], env, REPO)
    assert ask.returncode == 0 and "170" in ask.stdout, ask.stdout + ask.stderr

    url, proc = start_page(tmp_path, page_env(docs, store, free_port(), base=env))
    try:
        with playwright.sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                ask_in_browser(browser.new_page(), url, "How long did the storage outage last?")
            finally:
                browser.close()
    finally:
        stop(proc, grace_s=20)
    seen = attempts(log)
    assert not seen, "connections out: " + "; ".join(f"{a['by']} -> {a['target']} ({a['argv']})" for a in seen)


@pytest.mark.skipif(shutil.which("unshare") is None, reason="no unshare(1) on this machine")
def test_the_cli_journey_works_in_a_network_namespace_with_only_loopback(tmp_path):
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("unshare -n is not permitted here (needs root or user namespaces)")
    docs, store = tmp_path / "docs", tmp_path / "store"
    shutil.copytree(SAMPLE_DATA, docs)
    py = sys.executable
    script = (
        "ip link set lo up 2>/dev/null; "
        f"{py} -m ingest {docs} --store {store} -q && "
        f"{py} -m rag --store {store} ask 'Combien de jours par semaine peut-on télétravailler ?'"
    )
    done = subprocess.run(
        ["unshare", "-n", "sh", "-c", script], cwd=REPO, env=clean_env(), capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "[" in done.stdout  # an answer with its citations, made with no network at all


def test_streamlit_left_to_its_defaults_would_connect_out_and_our_settings_stop_it(tmp_path):
    """The control experiment: the guard sees Streamlit's own probes when it is started without the
    settings `python -m ui` applies (server.address, browser.gatherUsageStats), so the empty log of the
    journey above means something."""
    import time
    import urllib.request

    log = tmp_path / "net.log"
    env = guard_env(tmp_path / "site", log, clean_env())
    port = free_port()
    cmd = [sys.executable, "-m", "streamlit", "run", str(REPO / "ui" / "app.py"), "--server.headless", "true"]
    proc = subprocess.Popen(
        [*cmd, "--server.port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not attempts(log):
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2).close()
            time.sleep(0.5)
    finally:
        stop(proc, grace_s=20)
    seen = attempts(log)
    # seen here: a UDP "connect" to 8.8.8.8 (streamlit, to find its own address) and a lookup of
    # checkip.amazonaws.com (requests, called by streamlit to print an external URL)
    assert any(a["by"] == "streamlit" for a in seen), seen
    assert any("8.8.8.8" in a["target"] or "checkip" in a["target"] for a in seen), seen
