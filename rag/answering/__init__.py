"""Turning passages into an answer: the prompt, quotes and citations, follow-ups, conversations, translations,
summaries."""
