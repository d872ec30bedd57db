"""`sourcier ask` answered by a running `sourcier serve` over the same store (issue 31): the CLI loads no model,
prints the same answer, sources and JSON, and loads its own models when the server serves another store or
when asked to (--no-server)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time

import pytest

from tests.integration.test_api_abandon import SHORT, api_env, api_server, home  # noqa: F401

pytestmark = pytest.mark.integration


def ask(home, port: int, *args: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:  # noqa: F811
    cmd = [sys.executable, "-X", "importtime", "-m", "rag", "ask", *args]
    start = time.perf_counter()
    out = subprocess.run(
        cmd,
        cwd=home,
        capture_output=True,
        text=True,
        timeout=600,
        env=api_env(SOURCIER_SERVER__API_PORT=str(port), **env),
    )
    return out, time.perf_counter() - start


def loaded_llama(out: subprocess.CompletedProcess) -> bool:
    """Whether the process imported llama_cpp (python -X importtime lists every import on stderr)."""
    return re.search(r"\|\s*llama_cpp\s*$", out.stderr, re.MULTILINE) is not None


def test_ask_goes_to_the_server_of_its_store_and_loads_no_model(home):  # noqa: F811
    with api_server(home) as (base, _):
        port = int(base.rsplit(":", 1)[1])
        as_json, _ = ask(home, port, "--json", SHORT)  # the server loads its models at its first question
        served, served_s = ask(home, port, SHORT)
        alone, alone_s = ask(home, port, "--no-server", SHORT)
        other, _ = ask(home, port, SHORT, SOURCIER_PATHS__STORE_DIR=str(home / "another-store"))
    assert served.returncode in (0, 1), served.stderr[-2000:]
    assert f"answered by the server at {base}" in served.stderr and not loaded_llama(served)
    assert "retrieval" in served.stdout and "first token" in served.stdout  # the same sources and timings
    data = json.loads(as_json.stdout)
    assert data["question"] == SHORT and data["sources"] and data["timings"]["prompt_tokens"] > 0
    assert all(s["text"] and s["file"] for s in data["sources"])
    assert alone.returncode in (0, 1) and "answered by the server" not in alone.stderr and loaded_llama(alone)
    assert "answered by the server" not in other.stderr  # a server over another store is not this one's
    print(f"\nsourcier ask: {served_s:.1f} s through the warm server, {alone_s:.1f} s loading its own models")
    assert served_s < alone_s / 2
