"""Clients that go away, for real (issue 19): `python -m rag serve` as its own process on 127.0.0.1 with the
small GGUF (SmolLM2) over the sample documents, and the same API in front of llama_cpp.server.

Printed figures (pytest -s): the time from a client's disconnect to the next client's answer.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from devkit.models import smollm_path
from devkit.processes import free_port
from tests.conftest import SAMPLE_DATA
from tests.integration.test_real_ingest import cli
from tests.integration.test_servers import llama_cpp_server, start, stop, wait_for

pytestmark = pytest.mark.integration

LONG = "Describe everything these documents say, in great detail, with every number."
SHORT = "How long did the storage outage last?"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    """The sample documents ingested with the real embedder, as a user would."""
    home = tmp_path_factory.mktemp("abandon-home")
    shutil.copytree(SAMPLE_DATA, home / "data")
    out = cli("ingest", "-q", "data", cwd=home)
    assert out.returncode == 0, out.stderr
    return home


def api_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env.update(
        {
            "SOURCIER_LLM__MODEL_PATH": str(smollm_path()),
            "SOURCIER_LLM__ANSWERABILITY_CHECK": "false",  # as in the issue: quicker, same code path
            # The long question ("Describe everything...") is vague: the reranker's relevance gate and the
            # similarity floor would decline it before the model. These tests are about what happens while the
            # model generates.
            "SOURCIER_RETRIEVAL__MIN_RERANK_SCORE": "0",
            "SOURCIER_RETRIEVAL__MIN_SIMILARITY": "0",
            # A long free answer: these tests need a generation that is still running when the client leaves (the
            # quoted style goes through the same cancellable loop: tests/unit/test_api_abandon.py).
            "SOURCIER_LLM__ANSWER_STYLE": "free",
            **extra,
        }
    )
    return env


@contextmanager
def api_server(home: Path, **extra: str) -> Iterator[tuple[str, object]]:
    port = free_port()
    proc = start([sys.executable, "-m", "rag", "serve", "--port", str(port)], env=api_env(**extra), cwd=home)
    try:
        wait_for(f"http://127.0.0.1:{port}/health", proc)
        yield f"http://127.0.0.1:{port}", proc
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def api(home) -> Iterator[str]:
    with api_server(home) as (base, _):
        yield base


def body(question: str, **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


def abandon_stream(base: str) -> float:
    """The issue's reproduction: read the first line of a long streamed answer, then go away. Returns when."""

    async def leave_early() -> None:
        async with (
            httpx.AsyncClient(timeout=60) as client,
            client.stream("POST", f"{base}/v1/chat/completions", json=body(LONG, stream=True, max_tokens=1500)) as r,
        ):
            async for _ in r.aiter_lines():
                break

    asyncio.run(leave_early())
    return time.monotonic()


def ask(base: str, timeout: float = 10) -> str:
    reply = httpx.post(f"{base}/v1/chat/completions", json=body(SHORT, max_tokens=40), timeout=timeout)
    assert reply.status_code == 200, reply.text
    return reply.json()["choices"][0]["message"]["content"]


def model_state(base: str) -> dict:
    return httpx.get(f"{base}/health", timeout=5).json()["model"]


def test_an_abandoned_stream_then_a_plain_request_is_answered(api):
    left = abandon_stream(api)
    while model_state(api)["busy"]:
        assert time.monotonic() - left < 2, "the model was still held 2 s after the client left"
        time.sleep(0.02)
    released = time.monotonic() - left
    assert ask(api, timeout=10)
    took = time.monotonic() - left
    print(f"\n[abandon] model released {released:.2f} s after the disconnect; next answer {took:.2f} s after it")
    assert took < 10


def test_a_plain_request_whose_client_times_out_does_not_hold_the_model(api):
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{api}/v1/chat/completions", json=body(LONG, max_tokens=1500), timeout=1)
    left = time.monotonic()
    assert ask(api, timeout=10)
    print(f"\n[abandon] from a 1 s client timeout to the next answer: {time.monotonic() - left:.2f} s")


def test_five_abandoned_streams_in_a_row_then_an_answer(api):
    for _ in range(5):
        abandon_stream(api)
    t0 = time.monotonic()
    assert ask(api, timeout=10)
    print(f"\n[abandon] after 5 abandoned streams, the next answer took {time.monotonic() - t0:.2f} s")


def test_an_abandoned_stream_with_another_request_waiting(api):
    answers: list[str] = []

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=60) as client:  # noqa: SIM117 (the client outlives the stream)
            async with client.stream(
                "POST", f"{api}/v1/chat/completions", json=body(LONG, stream=True, max_tokens=1500)
            ) as first:
                lines = first.aiter_lines()  # kept referenced: the connection stays open until the block ends
                await lines.__anext__()
                waiting = asyncio.create_task(
                    client.post(f"{api}/v1/chat/completions", json=body(SHORT, max_tokens=40))
                )
                deadline = time.monotonic() + 20
                while (await asyncio.to_thread(model_state, api))["waiting"] < 1:
                    assert time.monotonic() < deadline, "the second request never queued"
                    await asyncio.sleep(0.1)
            left = time.monotonic()  # the first client has gone: the queued request gets the model
            while (await asyncio.to_thread(model_state, api))["waiting"] > 0:
                assert time.monotonic() - left < 2, "the queued request did not get the model"
                await asyncio.sleep(0.05)
            handed = time.monotonic() - left
            reply = await asyncio.wait_for(waiting, 60)  # its own prompt and answer (slower on a busy machine)
            answers.append(reply.json()["choices"][0]["message"]["content"])
            print(f"\n[abandon] the queued request got the model {handed:.2f} s after the first client left")

    asyncio.run(scenario())
    assert answers and answers[0]


def test_health_says_busy_during_a_long_answer_and_idle_after(api):
    request = body(LONG, stream=True, max_tokens=300)
    with httpx.stream("POST", f"{api}/v1/chat/completions", json=request, timeout=60) as r:
        lines = r.iter_lines()
        for _ in range(3):
            next(lines)
        state = model_state(api)
        assert state["busy"] is True and state["busy_s"] > 0 and state["since_progress_s"] < 5
        for _ in lines:
            pass
    t0 = time.monotonic()
    while model_state(api)["busy"]:
        assert time.monotonic() - t0 < 5
        time.sleep(0.1)


def test_sigterm_with_a_stream_in_flight_stops_the_server_within_5_s(home):
    with api_server(home) as (base, proc):
        reading = threading.Event()

        def read_forever() -> None:
            try:
                with httpx.stream(
                    "POST", f"{base}/v1/chat/completions", json=body(LONG, stream=True, max_tokens=1500), timeout=60
                ) as r:
                    for _ in r.iter_lines():
                        reading.set()
            except httpx.HTTPError:
                pass  # the server went away, as it should

        reader = threading.Thread(target=read_forever, daemon=True)
        reader.start()
        assert reading.wait(30)
        t0 = time.monotonic()
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
        took = time.monotonic() - t0
        print(f"\n[abandon] SIGTERM with a stream in flight: exited in {took:.2f} s")
        assert took < 5


# -- the LLM-server backend ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    with llama_cpp_server(smollm_path()) as url:
        yield url


def upstream_connections(pid: int, upstream: str) -> int:
    """Open TCP connections from our API process to the LLM server."""
    import psutil

    port = int(upstream.rsplit(":", 1)[1].split("/")[0])
    process = psutil.Process(pid)
    connections = process.net_connections(kind="tcp") if hasattr(process, "net_connections") else process.connections()
    return sum(1 for c in connections if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)


def test_over_an_llm_server_an_abandoned_stream_closes_the_upstream_one(home, upstream):
    with api_server(home, SOURCIER_LLM__BACKEND="server", SOURCIER_LLM__SERVER_URL=upstream) as (base, proc):
        seen: dict[str, float] = {}

        async def scenario() -> None:
            async with httpx.AsyncClient(timeout=60) as client:  # noqa: SIM117 (the client outlives the stream)
                async with client.stream(
                    "POST", f"{base}/v1/chat/completions", json=body(LONG, stream=True, max_tokens=1500)
                ) as first:
                    lines = first.aiter_lines()
                    await lines.__anext__()
                    deadline = time.monotonic() + 30
                    while not (await asyncio.to_thread(model_state, base))["busy"]:
                        assert time.monotonic() < deadline, "the answer never started"
                        await asyncio.sleep(0.05)
                    seen["during"] = upstream_connections(proc.pid, upstream)
                left = time.monotonic()  # the client has gone
                while upstream_connections(proc.pid, upstream) >= seen["during"]:
                    assert time.monotonic() - left < 5, "the upstream stream was not closed"
                    await asyncio.sleep(0.05)
                seen["closed"] = time.monotonic() - left

        asyncio.run(scenario())
        assert seen["during"] >= 1
        closed = seen["closed"]
        print(f"\n[abandon] over llama_cpp.server, the upstream stream was closed {closed:.2f} s after the client left")
        t0 = time.monotonic()
        assert ask(base, timeout=20)
        print(f"[abandon] over llama_cpp.server, the next answer took {time.monotonic() - t0:.2f} s")
        assert not model_state(base)["busy"]
