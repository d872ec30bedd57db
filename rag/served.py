"""`sourcier ask` through a running `sourcier serve`: its model, embedder and reranker are already loaded.

A question asked from a terminal used to load everything first (seconds before the first word). When the API
of this store is up on this machine (``server.address``:``server.api_port``), the CLI sends it the question
instead, streams the answer as it comes, and prints the same sources, timings and JSON. The server says which
store it serves (:func:`store_fingerprint`, in ``/health``): a server over another store is not used. Nothing
of the exchange is saved on the server (``store: false``).
"""

from __future__ import annotations

import hashlib
import json
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from rag.answering.answer import Answer
from rag.answering.answer_json import answer_from_json
from rag.errors import SourcierError
from rag.settings import Settings

SERVICE = "sourcier"
PROBE_S = 0.5  # a server that does not answer /health this fast is treated as absent


def store_fingerprint(store_dir: Path) -> str:
    """What identifies a store to a client on the same machine, without saying where it is."""
    return hashlib.sha256(str(Path(store_dir).expanduser().resolve()).encode()).hexdigest()[:16]


def base_url(settings: Settings) -> str:
    host = settings.server.api_host()
    host = "127.0.0.1" if host in ("0.0.0.0", "", "::") else host
    host = f"[{host}]" if ":" in host else host
    return f"http://{host}:{settings.server.api_port}"


def _headers(settings: Settings) -> dict[str, str]:
    key = settings.server.api_key
    return {"Authorization": f"Bearer {key.get_secret_value()}"} if key is not None else {}


def running_server(settings: Settings) -> str | None:
    """The base URL of a sourcier API over this store that answers now, or None."""
    url = base_url(settings)
    try:
        with urllib.request.urlopen(url + "/health", timeout=PROBE_S) as response:
            health = json.loads(response.read())
    except (OSError, ValueError):  # nothing listening, another program, a busy or broken server
        return None
    if health.get("service") != SERVICE or health.get("store") != store_fingerprint(settings.paths.store_dir):
        return None
    return url


class ServedAnswer:
    """The answer's text pieces as the server streams them; ``answer`` is complete once they are all read."""

    def __init__(self, url: str, settings: Settings, question: str, scope: Sequence[str]) -> None:
        self.answer: Answer | None = None
        body: dict[str, Any] = {"messages": [{"role": "user", "content": question}], "stream": True, "store": False}
        if scope:
            body["filter"] = {"sources": [_absolute(name) for name in scope]}
        self._request = urllib.request.Request(
            url + "/v1/chat/completions",
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", **_headers(settings)},
        )
        self._question = question
        self._timeout = settings.llm.timeout_s + 60  # the server's own limit on a stalled model, and then some
        self._url = url

    def __iter__(self) -> Iterator[str]:
        try:
            with urllib.request.urlopen(self._request, timeout=self._timeout) as response:
                for raw in response:
                    line = raw.decode("utf-8").strip()
                    if not line.startswith("data: ") or line == "data: [DONE]":
                        continue
                    event = json.loads(line[len("data: ") :])
                    if "error" in event:
                        raise SourcierError(f"the server at {self._url}: {event['error'].get('message', event)}")
                    choice = event["choices"][0]
                    if choice.get("finish_reason") == "stop":
                        self.answer = answer_from_json(event, self._question)
                    elif choice["delta"].get("content"):
                        yield choice["delta"]["content"]
        except urllib.error.HTTPError as exc:
            raise SourcierError(f"the server at {self._url}: {_error_message(exc)}") from None
        except (OSError, ValueError) as exc:
            raise SourcierError(f"the server at {self._url} stopped answering: {exc}") from None
        if self.answer is None:
            raise SourcierError(f"the server at {self._url} ended the answer without its sources")


def _absolute(name: str) -> str:
    """A path on disk made absolute (the server resolves it from its own folder); a document's name as is."""
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _error_message(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read())["error"]["message"])
    except (ValueError, KeyError, TypeError, OSError):
        return f"HTTP {exc.code}"
