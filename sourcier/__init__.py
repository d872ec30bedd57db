"""sourcier's one command line: ``sourcier ingest|ask|chat|model|serve|page|evaluate`` (see ``__main__``)."""
