"""Clients that go away must not wedge the API (issue 19): a real uvicorn server on 127.0.0.1 in this process,
a real store, the fake embedder and a fake model that streams slowly (or gets stuck), held like the real one.
The same scenarios against a real server process and a real GGUF: tests/integration/test_api_abandon.py."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from api.server import create_app
from devkit.processes import free_port
from rag.answering.answer import Answerer
from rag.llm.turns import Cancellation, ModelActivity
from rag.search.retrieval import Retriever
from service import Service
from tests.fakes import FakeEmbedder, FakeLLM, fake_ingestor

LONG = " ".join(f"word{i}" for i in range(400))  # 400 pieces x 20 ms: 8 s of answer
QUESTION = "How long did the storage outage last? outage minutes"


def wait_until(condition, seconds: float) -> float:
    """Seconds it took for ``condition()`` to hold; fails past ``seconds``."""
    t0 = time.monotonic()
    while not condition():
        assert time.monotonic() - t0 < seconds, f"not within {seconds} s"
        time.sleep(0.02)
    return time.monotonic() - t0


@contextmanager
def served(app) -> Iterator[str]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=1)
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_until(lambda: server.started, 10)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        assert not thread.is_alive(), "the server did not stop"


def sample_retriever(settings, corpus) -> Retriever:
    """The sample documents in a real store (fake embedder); every question reaches the model, unchecked."""
    settings.paths.docs_dir = corpus
    settings.retrieval.min_similarity = 0.0
    settings.llm.answerability_check = False
    ingestor = fake_ingestor(settings)[0]
    ingestor.run([corpus])
    return Retriever(ingestor.store, FakeEmbedder(), settings)


@pytest.fixture
def api(settings, corpus):
    """(base URL, the fake model, its queued replies)."""
    model = FakeLLM([], piece_delay=0.02)
    service = Service(settings, sample_retriever(settings, corpus), lambda path: model)
    with served(create_app(service)) as base:
        yield base, model, model.replies


def body(question: str = QUESTION, **extra) -> dict:
    return {"messages": [{"role": "user", "content": question}], **extra}


def abandon_stream(base: str) -> None:
    """Read the first event of a streamed answer, then go away (a closed tab, an impatient script)."""

    async def leave_early() -> None:
        async with (
            httpx.AsyncClient(timeout=30) as client,
            client.stream("POST", f"{base}/v1/chat/completions", json=body(stream=True)) as reply,
        ):
            async for _ in reply.aiter_lines():
                break

    asyncio.run(leave_early())


def test_an_abandoned_stream_gives_the_model_back_and_the_next_request_is_answered(api):
    base, model, replies = api
    replies += [LONG, "It lasted 47 minutes [1]."]
    abandon_stream(base)
    released = wait_until(lambda: not model.activity.state().busy, 2)
    reply = httpx.post(f"{base}/v1/chat/completions", json=body(), timeout=10)
    assert reply.status_code == 200 and reply.json()["choices"][0]["message"]["content"].startswith("It lasted")
    assert released < 1.0, f"the model was held {released:.2f} s after the client left"
    assert len(model.prompts) == 2


def test_a_plain_request_whose_client_times_out_stops_its_generation(api):
    base, model, replies = api
    replies += [LONG, "It lasted 47 minutes [1]."]
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{base}/v1/chat/completions", json=body(), timeout=1)
    wait_until(lambda: not model.activity.state().busy, 2)
    reply = httpx.post(f"{base}/v1/chat/completions", json=body(), timeout=10)
    assert reply.status_code == 200 and "47" in reply.json()["choices"][0]["message"]["content"]


def test_five_abandoned_streams_in_a_row_then_an_answer(api):
    base, model, replies = api
    replies += [LONG] * 5 + ["It lasted 47 minutes [1]."]
    for _ in range(5):
        abandon_stream(base)
    reply = httpx.post(f"{base}/v1/chat/completions", json=body(), timeout=10)
    assert reply.status_code == 200 and "47" in reply.json()["choices"][0]["message"]["content"]


def test_a_request_waiting_in_the_queue_is_answered_when_the_one_before_it_is_abandoned(api):
    base, model, replies = api
    replies += [LONG, "It lasted 47 minutes [1]."]
    waiting: dict[str, httpx.Response] = {}

    async def scenario() -> None:
        async with httpx.AsyncClient(timeout=30) as client:
            async with client.stream("POST", f"{base}/v1/chat/completions", json=body(stream=True)) as first:
                lines = first.aiter_lines()  # kept: leaving the loop would close the connection at once
                await lines.__anext__()
                second = asyncio.create_task(client.post(f"{base}/v1/chat/completions", json=body()))
                await asyncio.to_thread(wait_until, lambda: model.activity.state().waiting == 1, 5)
                assert model.activity.state().busy
            # the first client has gone (the response is closed unread); the second was queued behind it
            waiting["reply"] = await asyncio.wait_for(second, 10)

    asyncio.run(scenario())
    assert waiting["reply"].status_code == 200 and "47" in waiting["reply"].json()["choices"][0]["message"]["content"]


def test_a_complete_stream_still_ends_with_its_sources(api):
    base, _, replies = api
    replies.append("It lasted 47 minutes [1].")
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body(stream=True), timeout=10) as reply:
        lines = [line for line in reply.iter_lines() if line.startswith("data: ")]
    assert lines[-1] == "data: [DONE]" and '"sources"' in lines[-2]


def test_health_reports_a_busy_model_and_for_how_long(api):
    base, model, replies = api
    idle = httpx.get(f"{base}/health").json()
    assert idle["status"] == "ok" and idle["model"]["loaded"] is False
    replies.append(LONG)
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body(stream=True), timeout=10) as reply:
        lines = reply.iter_lines()
        next(lines)
        time.sleep(0.5)
        busy = httpx.get(f"{base}/health")
    assert busy.status_code == 200
    report = busy.json()
    assert report["status"] == "ok" and report["model"]["busy"] is True and report["model"]["busy_s"] >= 0.4
    assert report["model"]["since_progress_s"] < 0.5  # tokens keep coming: busy, not stuck
    wait_until(lambda: not httpx.get(f"{base}/health").json()["model"]["busy"], 2)


class StuckLLM(FakeLLM):
    """Takes the model and then produces nothing until released (a wedged generation)."""

    def __init__(self) -> None:
        super().__init__([])
        self.release = threading.Event()

    def stream(self, prompt, max_tokens=None, decoding=None, cancel=None, grammar=None):
        with self.activity.hold(cancel):
            self.release.wait(30)
            yield "late"


def test_health_turns_unhealthy_when_a_generation_holds_the_model_without_progress(settings, corpus):
    settings.llm.timeout_s = 1.0
    model = StuckLLM()
    service = Service(settings, sample_retriever(settings, corpus), lambda path: model)
    with served(create_app(service)) as base:
        pending = threading.Thread(
            target=lambda: httpx.post(f"{base}/v1/chat/completions", json=body(), timeout=10), daemon=True
        )
        pending.start()
        wait_until(lambda: model.activity.state().busy, 5)
        assert httpx.get(f"{base}/health").status_code == 200  # held, but not yet for long
        took = wait_until(lambda: httpx.get(f"{base}/health").status_code == 503, 5)
        report = httpx.get(f"{base}/health").json()
        assert report["status"] == "unhealthy" and "llm.timeout_s" in report["reason"]
        assert 0.5 < took < 3
        model.release.set()
        pending.join(10)
        wait_until(lambda: httpx.get(f"{base}/health").status_code == 200, 3)


def test_shutdown_with_a_stream_in_flight_stops_it(api):
    """The in-process twin of SIGTERM: uvicorn's graceful shutdown cancels the request after its grace time,
    and the request's cancellation stops the generation (the fixture asserts the server stopped)."""
    base, model, replies = api
    replies.append(LONG)
    with httpx.stream("POST", f"{base}/v1/chat/completions", json=body(stream=True), timeout=10) as reply:
        next(reply.iter_lines())
        assert model.activity.state().busy


# -- the model's side ------------------------------------------------------------------------------------


def test_a_generation_waiting_for_the_model_gives_up_its_turn_when_cancelled():
    activity = ModelActivity(exclusive=True)
    cancel = Cancellation()
    got: list[object] = []
    with activity.hold() as first:
        assert first is not None

        def wait_turn() -> None:
            with activity.hold(cancel) as hold:
                got.append(hold)

        waiter = threading.Thread(target=wait_turn)
        waiter.start()
        wait_until(lambda: activity.state().waiting == 1, 2)
        cancel.cancel()
        waiter.join(1)
        assert not waiter.is_alive() and got == [None]
    with activity.hold() as again:  # the turn was not taken by the cancelled one
        assert again is not None


def test_waiting_generations_take_the_model_in_order_and_are_told_how_many_are_ahead():
    activity = ModelActivity(exclusive=True)
    order: list[str] = []
    told: dict[str, list[int]] = {"b": [], "c": [], "d": []}
    cancel_c = Cancellation()

    def ask(name: str, cancel: Cancellation | None = None) -> None:
        with activity.hold(cancel, on_wait=told[name].append) as hold:
            if hold is not None:
                order.append(name)
                if name == "b":  # keep the model until d has seen itself next
                    wait_until(lambda: told["d"][-1:] == [1], 2)

    with activity.hold():
        threads = []
        for arrived, name in enumerate("bcd", 1):  # arrive in this order
            threads.append(threading.Thread(target=ask, args=(name, cancel_c if name == "c" else None)))
            threads[-1].start()
            wait_until(lambda n=arrived: activity.state().waiting == n, 2)
        assert told == {"b": [1], "c": [2], "d": [3]}  # the running one counts
        cancel_c.cancel()  # c gives up: d moves up
        wait_until(lambda: told["d"] == [3, 2], 2)
    for t in threads:
        t.join(2)
    assert order == ["b", "d"] and told["d"] == [3, 2, 1]


def test_an_answer_reports_its_wait_for_the_model(settings, corpus):
    settings.retrieval.min_similarity = 0.0
    model = FakeLLM(["The outage lasted 47 minutes [1]."])
    answerer = Answerer(settings, sample_retriever(settings, corpus), model)
    positions: list[int] = []
    streams = []
    with model.activity.hold():  # another question holds the model
        worker = threading.Thread(target=lambda: streams.append(answerer.stream("outage", on_wait=positions.append)))
        worker.start()
        wait_until(lambda: positions == [1], 2)
        time.sleep(0.2)
    worker.join(2)
    list(streams[0])
    timings = streams[0].answer.timings
    assert timings.queue_ms >= 200 and timings.retrieval_ms < timings.queue_ms


def test_activity_tracks_holders_and_progress():
    now = [100.0]
    activity = ModelActivity(exclusive=False, clock=lambda: now[0])
    assert not activity.state().busy
    with activity.hold() as a, activity.hold() as b:
        now[0] = 103.0
        b.progress()
        now[0] = 104.0
        state = activity.state()
        assert state.running == 2 and state.busy_s == 4.0 and state.quiet_s == 4.0
        a.progress()
        assert activity.state().quiet_s == 1.0
    assert activity.state().running == 0


def test_closing_an_answer_stream_early_releases_the_model(settings, corpus):
    from rag.answering.answer import Answerer

    model = FakeLLM([LONG])
    stream = Answerer(settings, sample_retriever(settings, corpus), model).stream(QUESTION)
    pieces = iter(stream)
    next(pieces)
    assert model.activity.state().busy
    stream.close()
    assert not model.activity.state().busy


def test_a_cancelled_answer_stops_at_the_next_piece(settings, corpus):
    from rag.answering.answer import Answerer

    model = FakeLLM([LONG])
    cancel = Cancellation()
    stream = Answerer(settings, sample_retriever(settings, corpus), model).stream(QUESTION, (), cancel)
    got = []
    for piece in stream:
        got.append(piece)
        if len(got) == 3:
            cancel.cancel()
    assert len(got) == 3 and stream.answer is not None and stream.answer.cancelled
    assert not model.activity.state().busy
