"""Models come from one registry and speak one interface: the server backend (over a real loopback HTTP
server), a registered backend (the fake), and the errors for a name nobody registered."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from rag import llm as llm_package
from rag.errors import SettingsError
from rag.llm import ChatModel, LocalLLM, RemoteLLM, backends, load_llm, register_backend
from tests.fakes import FakeLLM

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Does it say yes?"}]


class ChatHandler(BaseHTTPRequestHandler):
    """A minimal OpenAI-compatible server: one model, a streamed answer, log-probabilities for one token."""

    def log_message(self, *args):  # keep the test output quiet
        pass

    def _send(self, status: int, body: bytes, kind: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        self._send(200, json.dumps({"data": [{"id": "tiny"}]}).encode(), "application/json")

    def do_POST(self):
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if request["stream"]:
            events = [{"choices": [{"delta": {"content": p}}]} for p in ("Yes, ", "it does [1].")]
            body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send(200, body.encode(), "text/event-stream")
            return
        top = [{"token": "yes", "logprob": -0.1}, {"token": "no", "logprob": -2.4}]
        reply = {"choices": [{"message": {"content": "yes"}, "logprobs": {"content": [{"top_logprobs": top}]}}]}
        self._send(200, json.dumps(reply).encode(), "application/json")


@pytest.fixture
def chat_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def fake_backend():
    model = FakeLLM(["Yes, it does [1]."])
    register_backend("fake", lambda settings, model_path: model)
    try:
        yield model
    finally:
        llm_package._BACKENDS.pop("fake", None)


def speaks_the_interface(model: ChatModel) -> None:
    assert isinstance(model, ChatModel)
    prompt = model.prompter.render(MESSAGES)
    assert prompt.size > 0 and model.n_ctx >= prompt.size
    assert "".join(model.stream(prompt, max_tokens=16)).strip() == "Yes, it does [1]."
    score = model.answerability(prompt)
    assert score is None or 0.0 <= score <= 1.0
    assert set(model.sampling_kwargs()) >= {"temperature", "top_p", "seed"}
    assert model.describe()


def test_the_built_in_backends_are_registered():
    assert {"local", "server"} <= set(backends())


def test_the_server_backend_comes_from_the_registry_and_speaks_the_interface(settings, chat_server):
    settings.llm.backend = "server"
    settings.llm.server_url = chat_server
    model = load_llm(settings)
    assert isinstance(model, RemoteLLM) and model.model == "tiny" and model.model_path is None
    speaks_the_interface(model)
    assert model.answerability(model.prompter.render(MESSAGES)) == pytest.approx(0.9093, abs=1e-3)
    assert chat_server in model.describe()


def test_a_registered_backend_is_built_from_the_settings(settings, fake_backend):
    settings.llm.backend = "fake"
    model = load_llm(settings)
    assert model is fake_backend
    speaks_the_interface(model)


def test_an_unknown_backend_names_the_known_ones(settings):
    settings.llm.backend = "ollama-native"
    with pytest.raises(SettingsError, match=r"unknown LLM backend 'ollama-native'.*local, server"):
        load_llm(settings)


def test_a_backend_that_builds_something_else_is_refused(settings):
    register_backend("broken", lambda settings, model_path: object())
    try:
        settings.llm.backend = "broken"
        with pytest.raises(SettingsError, match="built a object, not a rag.llm.ChatModel"):
            load_llm(settings)
    finally:
        llm_package._BACKENDS.pop("broken", None)


def test_a_name_is_registered_once_unless_replaced(fake_backend):
    with pytest.raises(SettingsError, match="already registered"):
        register_backend("fake", lambda settings, model_path: fake_backend)
    register_backend("fake", lambda settings, model_path: fake_backend, replace=True)


def test_the_local_backend_is_a_chat_model_without_loading_one():
    assert issubclass(LocalLLM, ChatModel) and issubclass(RemoteLLM, ChatModel)
    with pytest.raises(TypeError, match="abstract"):
        ChatModel()  # the interface cannot be used as a model by itself
