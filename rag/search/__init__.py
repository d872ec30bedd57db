"""Finding the passages: the store, the keyword index, hybrid search, reranking, routing, scopes."""
