"""sourcier's core: settings, the store and its searches, embeddings, models, answers, accounts, and the
``python -m rag`` command line (no page, no HTTP server: those are ``ui`` and ``api``)."""

from rag.offline import enforce_offline

enforce_offline()
