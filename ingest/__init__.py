"""Files -> chunks -> vectors: the only writer of the store."""
