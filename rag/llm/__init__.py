"""Chat models: the interface (``base``), the GGUF run in this process (``local``) or in a supervised worker
process (``worker``, the default), an OpenAI-compatible server (``server``), and :func:`load_llm`, which
builds the one ``llm.backend`` names.

Backends are looked up in a small registry, so a new one (another server protocol, a test double) is a
factory registered under a name, not a new branch::

    from rag.llm import register_backend
    register_backend("mine", lambda settings, model_path: MyModel(settings))   # llm.backend = "mine"

Nothing heavy is imported here: llama_cpp and httpx load when a backend is built.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rag.errors import SettingsError
from rag.llm.base import ZERO_WIDTH_SPACE, ChatModel, Prompt, Prompter, decoding_kwargs
from rag.llm.local import ChatPrompter, LocalLLM, chat_template_for, compile_grammar, load_local, model_wants_bos
from rag.llm.server import RemoteLLM, ServerPrompter, connect_llm_server
from rag.llm.worker import WorkerLLM, load_worker
from rag.settings import Settings

Backend = Callable[[Settings, "Path | None"], ChatModel]
"""Builds a model from the settings (and, for a backend that runs a file, the file the caller chose)."""

_BACKENDS: dict[str, Backend] = {}


def register_backend(name: str, factory: Backend, replace: bool = False) -> None:
    """Make ``llm.backend = name`` build its model with ``factory(settings, model_path)``."""
    if name in _BACKENDS and not replace:
        raise SettingsError(f"an LLM backend named '{name}' is already registered (pass replace=True to replace it)")
    _BACKENDS[name] = factory


def backends() -> list[str]:
    """The registered backend names."""
    return sorted(_BACKENDS)


def load_llm(settings: Settings, model_path: Path | None = None) -> ChatModel:
    """The configured model: with ``llm.backend = "local"`` the GGUF loaded in this process (heavy: call once
    and share), with ``"server"`` a checked connection to the LLM server, or a registered backend's model."""
    name = settings.llm.backend
    factory = _BACKENDS.get(name)
    if factory is None:
        raise SettingsError(
            f"unknown LLM backend '{name}' (llm.backend / SOURCIER_LLM__BACKEND): choose one of {', '.join(backends())}"
        )
    model = factory(settings, model_path)
    if not isinstance(model, ChatModel):
        raise SettingsError(f"the LLM backend '{name}' built a {type(model).__name__}, not a rag.llm.ChatModel")
    return model


def _load_gguf(settings: Settings, model_path: Path | None) -> ChatModel:
    """The local GGUF: in its own worker process (``llm.worker_process``), or in this one."""
    return (load_worker if settings.llm.worker_process else load_local)(settings, model_path)


register_backend("local", _load_gguf)
register_backend("server", lambda settings, _model_path: connect_llm_server(settings))

__all__ = [
    "ZERO_WIDTH_SPACE",
    "Backend",
    "ChatModel",
    "ChatPrompter",
    "LocalLLM",
    "Prompt",
    "Prompter",
    "RemoteLLM",
    "ServerPrompter",
    "WorkerLLM",
    "backends",
    "chat_template_for",
    "compile_grammar",
    "connect_llm_server",
    "decoding_kwargs",
    "load_llm",
    "load_local",
    "load_worker",
    "model_wants_bos",
    "register_backend",
]
