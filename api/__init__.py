"""sourcier's HTTP API (``python -m api`` / ``python -m rag serve``): OpenAI-compatible chat with sources,
documents, conversations, page images; what it shares with the page lives in ``service``."""
