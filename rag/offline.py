"""Offline by construction: switch off every network path of the libraries we use.

Called when ``rag`` is imported, before any Hugging Face, Chroma or LangChain import, so that a
user's environment can never turn a hub download or telemetry back on.
"""

from __future__ import annotations

import os

OFFLINE_ENVIRONMENT = {
    # Hugging Face hub / transformers / sentence-transformers: never download, never phone home.
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "HF_HUB_DISABLE_TELEMETRY": "1",
    "HF_HUB_DISABLE_IMPLICIT_TOKEN": "1",
    "DO_NOT_TRACK": "1",
    # Chroma's posthog telemetry (also passed explicitly as a client setting).
    "ANONYMIZED_TELEMETRY": "False",
    # LangSmith tracing posts runs out when enabled.
    "LANGCHAIN_TRACING_V2": "false",
    "LANGSMITH_TRACING": "false",
    "LANGCHAIN_TRACING": "false",
    # No download/loading progress bars of the model libraries in our output.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    # Quiet fork warning of the tokenizers library.
    "TOKENIZERS_PARALLELISM": "false",
}


def enforce_offline() -> None:
    """Set the variables above in this process (and so in its children)."""
    os.environ.update(OFFLINE_ENVIRONMENT)
