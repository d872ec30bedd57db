"""sourcier's core: settings, store, embeddings, models (no UI, no CLI parsing)."""

from rag.offline import enforce_offline

enforce_offline()
