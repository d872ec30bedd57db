"""The models we load ourselves: the embedders (their registry) and the GGUF file."""
