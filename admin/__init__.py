"""``sourcier users`` and ``sourcier collections``: a team's people and who may read which documents.

The accounts live in ``rag.accounts``; changing a collection rewrites the collections its documents' chunks
carry (metadata only, under the ingest's one-writer lock: ``ingest.pipeline.sync_collections``).
"""
