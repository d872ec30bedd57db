"""An OpenAI-compatible chat server as the model: llama.cpp's llama-server, llama_cpp.server, vLLM, Ollama.

The server applies its own chat template, so what we send is the messages, not tokens. Packing still
works: the prompt's size is estimated (UTF-8 bytes / ``llm.server_bytes_per_token``, plus a few tokens a
message) against the configured ``llm.n_ctx``; the estimate errs on the large side. Control-token
spellings inside messages (``<|im_start|>``, ``[INST]``...) are defused as for a local model, since most
servers parse special tokens in the rendered text.

Reliability: connecting waits ``llm.connect_timeout_s``; every wait for the next piece of the answer is
bounded by ``llm.timeout_s``; unreachable servers and 429/5xx replies are retried ``llm.retries`` times
with backoff before an answer starts (never after). Every failure is an :class:`LLMServerError` naming
the server and what to do.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import socket
import time
from collections.abc import Iterator, Sequence
from typing import Any

from rag.errors import LLMServerError
from rag.llm.base import ZERO_WIDTH_SPACE, ChatModel, Prompt, decoding_kwargs
from rag.llm.gbnf import check_grammar
from rag.llm.turns import Cancellation, ModelActivity, cancelled
from rag.settings import LLMSettings, Settings

MESSAGE_OVERHEAD = 8  # role markers and separators a template adds around each message
RETRY_STATUS = {429, 500, 502, 503, 504}
NON_OPENAI_SAMPLING = ("top_k", "min_p", "repeat_penalty")  # llama.cpp, vLLM and Ollama accept them
_CONTROL = re.compile(
    r"<\|[^<>|\s]{1,40}\|>|\[/?INST\]|\[/?SYS\]|<</?SYS>>|</?s>|<(?:start|end)_of_turn>|<(?:bos|eos|pad)>",
    re.IGNORECASE,
)


class ServerPrompter:
    """Messages as the server will get them, with an estimate of their size in tokens."""

    template_origin = "server"

    def __init__(self, bytes_per_token: float) -> None:
        self.bytes_per_token = bytes_per_token

    def render(self, messages: Sequence[dict[str, str]]) -> Prompt:
        messages = [{**m, "content": self.defuse(m["content"])} for m in messages]
        text = "\n\n".join(f"[{m['role']}]\n{m['content']}" for m in messages)
        size = sum(self.count_tokens(m["content"]) + MESSAGE_OVERHEAD for m in messages) + MESSAGE_OVERHEAD
        return Prompt(text=text, tokens=[], stop=[], messages=messages, estimated_tokens=size)

    def count_tokens(self, text: str) -> int:
        return math.ceil(len(text.encode("utf-8")) / self.bytes_per_token)

    @staticmethod
    def defuse(text: str) -> str:
        """``text`` with the usual control-token spellings broken by a zero-width space (shown the same)."""
        return _CONTROL.sub(lambda m: m.group(0)[0] + ZERO_WIDTH_SPACE + m.group(0)[1:], text)


class RemoteLLM(ChatModel):
    """The model behind an OpenAI-compatible ``/chat/completions`` endpoint."""

    def __init__(self, settings: Settings, model: str, client: Any) -> None:
        self.settings = settings
        self.model = model
        self.client = client  # an httpx.Client (tests pass one over a fake transport)
        self.url = settings.llm.server_url.rstrip("/")
        self.prompter = ServerPrompter(settings.llm.server_bytes_per_token)
        self.last_prompt: Prompt | None = None
        self.activity = ModelActivity(exclusive=False)  # the server schedules its own requests
        self._logprobs = True  # turned off if the server refuses them

    @property
    def n_ctx(self) -> int:
        return self.settings.llm.n_ctx  # the server's own context size, as configured

    def describe(self) -> str:
        return f"the LLM server {self.url} (model {self.model or 'default'})"

    def sampling_kwargs(self, decoding: LLMSettings | None = None) -> dict[str, Any]:
        """The same decoding arguments as the local model's, less the non-OpenAI ones when turned off."""
        s = decoding or self.settings.llm
        kwargs = decoding_kwargs(s)
        if not s.server_sampling_extras:
            for name in NON_OPENAI_SAMPLING:
                del kwargs[name]
        return kwargs

    def stream(
        self,
        prompt: Prompt,
        max_tokens: int | None = None,
        decoding: LLMSettings | None = None,
        cancel: Cancellation | None = None,
        grammar: str | None = None,
    ) -> Iterator[str]:
        """Text pieces of the answer as the server sends them (server-sent events). A ``grammar`` (GBNF) is sent
        in the request's ``grammar`` field when ``llm.server_grammar`` says the server reads it (llama.cpp's
        server, llama-cpp-python's); otherwise the output comes unconstrained and is checked after.

        The upstream stream is closed when this generator is closed, finishes or fails, and at once when
        ``cancel`` is set, even while waiting for the server's first piece: the server stops generating for
        a client that is gone.
        """
        s = decoding or self.settings.llm
        self.last_prompt = prompt
        payload = {
            "model": self.model,
            "messages": prompt.messages,
            "max_tokens": max_tokens or s.max_tokens,
            "stream": True,
            **self.sampling_kwargs(s),
        }
        if grammar and self.settings.llm.server_grammar:
            check_grammar(grammar)  # llama.cpp's server would fail on a bad one, or crash
            payload["grammar"] = grammar
        with self.activity.hold(cancel) as hold:
            if hold is None:
                return
            response = self._post("/chat/completions", payload, stream=True)
            forget = cancel.on_cancel(lambda: _interrupt(response)) if cancel is not None else (lambda: None)
            try:
                for line in self._lines(response, cancel):
                    hold.progress()
                    if cancelled(cancel):
                        return
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        return
                    piece = _delta_text(self._json(data))
                    if piece:
                        yield piece
            finally:
                forget()
                response.close()

    def answerability(self, prompt: Prompt, cancel: Cancellation | None = None) -> float | None:
        """P(yes) / P(yes + no) of the first answer token, from the server's log-probabilities; a server
        without them gives its word instead (yes 1.0, no 0.0); None when it says neither, or when cancelled."""
        if cancelled(cancel):
            return None
        payload: dict[str, Any] = {
            "model": self.model,
            "messages": prompt.messages,
            "max_tokens": 1,
            "temperature": 0.0,
            "stream": False,
        }
        if self._logprobs:
            payload |= {"logprobs": True, "top_logprobs": 10}
        try:
            reply = self._json(self._post("/chat/completions", payload, stream=False).text)
        except LLMServerError:
            if not self._logprobs:
                raise
            self._logprobs = False  # some servers refuse the fields: ask again without them
            return self.answerability(prompt, cancel)
        choice = (reply.get("choices") or [{}])[0]
        score = _yes_share(choice.get("logprobs"))
        if score is not None:
            return score
        word = ((choice.get("message") or {}).get("content") or "").strip().lower()
        return 1.0 if word.startswith("yes") else 0.0 if word.startswith("no") else None

    # -- HTTP -------------------------------------------------------------------------------------

    def _headers(self) -> dict[str, str]:
        key = self.settings.llm.api_key
        return {"Authorization": f"Bearer {key.get_secret_value()}"} if key else {}

    def _post(self, path: str, payload: dict[str, Any], stream: bool) -> Any:
        """The server's response (status checked), after retrying what is worth retrying."""
        import httpx

        retries = self.settings.llm.retries
        for attempt in range(retries + 1):
            last = attempt == retries
            request = self.client.build_request("POST", self.url + path, json=payload, headers=self._headers())
            try:
                response = self.client.send(request, stream=stream)
            except httpx.TransportError as exc:
                # A read timeout means the server took the request: asking again would only wait twice.
                if last or isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout):
                    raise self._unreachable(exc) from None
                _backoff(attempt)
                continue
            if response.status_code in RETRY_STATUS and not last:
                response.close()
                _backoff(attempt)
                continue
            if response.status_code >= 400:
                raise LLMServerError(self._refusal(response))
            return response
        raise AssertionError("unreachable")

    def _lines(self, response: Any, cancel: Cancellation | None = None) -> Iterator[str]:
        import httpx

        try:
            yield from response.iter_lines()
        except httpx.TransportError as exc:
            if cancelled(cancel):
                return  # we cut the connection ourselves
            if isinstance(exc, httpx.TimeoutException):
                raise self._unreachable(exc) from None
            raise LLMServerError(f"{self.describe()} broke off the answer: {exc}") from None

    def _unreachable(self, exc: Exception) -> LLMServerError:
        """The error for a request that got no answer: no connection, or silence past a timeout."""
        import httpx

        s = self.settings.llm
        if isinstance(exc, httpx.ConnectTimeout):
            why = f"cannot connect to {self.describe()} within {s.connect_timeout_s:g} s (llm.connect_timeout_s)"
        elif isinstance(exc, httpx.TimeoutException):
            why = (
                f"{self.describe()} sent nothing for {s.timeout_s:g} s (llm.timeout_s): it is overloaded or stuck; "
                f"try again, or raise llm.timeout_s for a slow model"
            )
        else:
            why = f"cannot reach {self.describe()}: {exc} -- is it running? (llm.server_url)"
        return LLMServerError(why)

    def _refusal(self, response: Any) -> str:
        try:
            body = response.read().decode("utf-8", errors="replace")
        except Exception:  # the body itself may not come
            body = ""
        detail = _error_detail(body)
        status = response.status_code
        hint = {
            401: "check llm.api_key (SOURCIER_LLM__API_KEY)",
            403: "check llm.api_key (SOURCIER_LLM__API_KEY)",
            404: f"check llm.server_url (it should end in /v1) and llm.server_model ('{self.model}')",
        }.get(status, "")
        if status == 400 and re.search(r"context|too long|exceed", detail, re.IGNORECASE):
            hint = "the prompt exceeds the server's context: set llm.n_ctx to the server's context size"
        return f"{self.describe()} refused the request (HTTP {status}): {detail}" + (f" -- {hint}" if hint else "")

    def _json(self, text: str) -> dict[str, Any]:
        try:
            data = json.loads(text)
        except ValueError:
            raise LLMServerError(f"{self.describe()} sent something that is not JSON: {text[:200]!r}") from None
        if isinstance(data, dict) and "error" in data:
            raise LLMServerError(f"{self.describe()} reported an error: {_error_detail(json.dumps(data))}")
        return data if isinstance(data, dict) else {}


def _interrupt(response: Any) -> None:
    """Cut a streamed response's connection from another thread: ``shutdown`` wakes the thread blocked reading
    it (``close`` would not) and tells the server its client is gone. The socket comes from httpx's documented
    ``network_stream`` response extension."""
    stream = response.extensions.get("network_stream")
    sock = stream.get_extra_info("socket") if stream is not None else None
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)


def _backoff(attempt: int) -> None:
    time.sleep(min(0.5 * 2**attempt, 8.0))


def _delta_text(event: dict[str, Any]) -> str:
    choices = event.get("choices") or [{}]
    delta = choices[0].get("delta") or {}
    return str(delta.get("content") or "")


def _yes_share(logprobs: Any) -> float | None:
    """P(yes) / (P(yes) + P(no)) over the first token's top alternatives, or None when they lack both."""
    try:
        top = logprobs["content"][0]["top_logprobs"]
    except (KeyError, IndexError, TypeError):
        return None
    yes = no = 0.0
    for entry in top:
        word = str(entry.get("token", "")).strip().lower()
        p = math.exp(float(entry.get("logprob", -math.inf)))
        if word == "yes":
            yes += p
        elif word == "no":
            no += p
    return yes / (yes + no) if yes + no > 0 else None


def _error_detail(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300] or "(no details)"
    error = data.get("error", data) if isinstance(data, dict) else data
    if isinstance(error, dict):
        return str(error.get("message") or error)[:300]
    return str(error)[:300]


def connect_llm_server(settings: Settings, client: Any = None) -> RemoteLLM:
    """A :class:`RemoteLLM` for the configured server, checked once: reachable, and the model known.

    With no ``llm.server_model`` the first model the server lists is used (llama.cpp and
    llama_cpp.server serve one).
    """
    import httpx

    s = settings.llm
    if client is None:
        client = httpx.Client(
            timeout=httpx.Timeout(s.timeout_s, connect=s.connect_timeout_s),
            trust_env=False,  # never route a private question through a proxy from the environment
        )
    llm = RemoteLLM(settings, s.server_model, client)
    try:
        listed = llm._json(client.get(llm.url + "/models", headers=llm._headers()).raise_for_status().text)
    except httpx.HTTPStatusError as exc:
        raise LLMServerError(llm._refusal(exc.response)) from None
    except httpx.TransportError as exc:
        raise llm._unreachable(exc) from None
    names = [str(m.get("id")) for m in listed.get("data", []) if isinstance(m, dict)]
    if not s.server_model:
        if not names:
            raise LLMServerError(f"{llm.describe()} lists no model: set llm.server_model")
        llm.model = names[0]
    elif names and not any(n == s.server_model or n.startswith(s.server_model + ":") for n in names):
        raise LLMServerError(
            f"{llm.describe()} does not serve '{s.server_model}' (it lists: {', '.join(names[:10])}): "
            f"set llm.server_model to one of them"
        )
    return llm
