"""sourcier's HTTP API and the service it shares with the page (``python -m api`` / ``python -m rag serve``)."""
