"""``sourcier summarize FILE`` and ``sourcier compare A B`` (``python -m rag``): progress on stderr, the result
on stdout (points with their pages, or JSON). Ctrl-C stops at the next token; the sections done are kept."""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from rag.answering.summary import Comparison, Progress, Summary, details_line, duration_said, summary_text

EXIT_OK, EXIT_NOT_FOUND = 0, 1


def run_summary(args: Any, settings: Any) -> int:
    from rag.accounts import readable_by
    from rag.answering.summary import Summarizer, find_document, summary_cache
    from rag.llm import load_llm
    from rag.llm.turns import Cancellation
    from rag.search.retrieval import open_existing_store

    store = open_existing_store(settings)  # nothing is embedded: any embedding model's store
    readable = readable_by(settings.paths.store_dir, args.user)
    names = [args.document] if args.command == "summarize" else [args.first, args.second]
    docs = [find_document(store, name, readable) for name in names]  # before any model loads
    llm = load_llm(settings)
    cancel = Cancellation()
    summarizer = Summarizer(llm, store, summary_cache(settings.paths.store_dir))
    progress = _Printer()
    try:
        if args.command == "summarize":
            result: Summary | Comparison = summarizer.summarize(
                docs[0], args.language, readable, cancel, progress, refresh=args.refresh
            )
        else:
            result = summarizer.compare(docs[0], docs[1], args.language, readable, cancel, progress)
    except KeyboardInterrupt:
        cancel.cancel()
        print("\nstopped: the sections done are kept, the next run goes on from there", file=sys.stderr)
        return 130
    finally:
        progress.end()
        llm.close()
    if args.json:
        print(json.dumps(result.as_dict(), indent=2, ensure_ascii=False))
    elif isinstance(result, Summary):
        print_summary(result)
    else:
        print_comparison(result)
    empty = not result.points if isinstance(result, Summary) else not result.rows
    return EXIT_NOT_FOUND if empty else EXIT_OK


class _Printer:
    """One line of progress on stderr, rewritten in place on a terminal."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self.start = time.perf_counter()
        self.shown = False

    def __call__(self, p: Progress) -> None:
        left = f", about {duration_said(p.eta_s)} left" if p.eta_s else ""
        what = {"map": "sections", "reduce": "summary", "compare": "comparison"}[p.stage]
        line = f"{what}: {p.done}/{p.total} done{left}"
        print(f"\r{line:<60}" if self.tty else line, end="" if self.tty else "\n", file=sys.stderr, flush=True)
        self.shown = True

    def end(self) -> None:
        if self.shown and self.tty:
            print(file=sys.stderr)


def print_summary(summary: Summary) -> None:
    print(f"{summary.source}, {summary.pages} page{'s' if summary.pages != 1 else ''}:")
    print(summary_text(summary.points) or "(nothing the pages back could be written)", flush=True)
    print(f"({details_line(summary.details())})", file=sys.stderr)


def print_comparison(comparison: Comparison) -> None:
    a, b = comparison.a.source, comparison.b.source
    print(f"A: {a}\nB: {b}\n")
    for row in comparison.rows:
        print(f"* {row.topic}")
        for label, side in (("A", row.a), ("B", row.b)):
            if side is None:
                print(f"  {label}: -")
            else:
                mark = "" if side.supported else " (not found on the pages cited)"
                print(f"  {label}: {side.text} (p. {', '.join(str(n) for n in side.pages) or '?'}){mark}")
    if not comparison.rows:
        print("(no topic could be lined up)")
    print(f"({details_line({'kind': 'compare', 'documents': [comparison.a.details(), comparison.b.details()]})})",
          file=sys.stderr)  # fmt: skip
