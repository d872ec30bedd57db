"""``sourcier``: one command for everything, each subcommand the existing entry point it names.

    sourcier ingest ./docs                 python -m ingest ./docs
    sourcier ask "question" [--in FILE]    python -m rag ask ...
    sourcier chat | model                  python -m rag chat | model
    sourcier summarize FILE | compare A B  python -m rag summarize | compare (whole documents, cited pages)
    sourcier serve [--host H --port P]     python -m api (the HTTP API, in this process)
    sourcier page                          python -m ui (the Streamlit page)
    sourcier evaluate SET ...              python -m evaluation ...
    sourcier users | collections | audit   python -m admin ... (a team's accounts, and the audit trail)
    sourcier cards list | set FILE ...     python -m admin cards ... (the documents' cards, corrected)

``--config FILE`` and ``--store DIR`` may come before the subcommand and reach it. ``sourcier COMMAND --help``
shows that command's own options. Only the chosen entry point is imported, so ``--help`` costs nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

COMMANDS: dict[str, str] = {
    "ingest": "read a folder of documents into the store (only what changed)",
    "ask": "answer one question from the documents, with its sources",
    "chat": "a conversation about the documents",
    "summarize": "a whole document's summary, each point cited to its pages",
    "compare": "two documents lined up topic by topic, each side cited to its own pages",
    "model": "assemble and verify the GGUF model; export the embedding model",
    "serve": "the HTTP API (OpenAI-compatible chat with sources, documents) on 127.0.0.1",
    "page": "the Streamlit page on 127.0.0.1",
    "evaluate": "measure retrieval and answers on a question set",
    "users": "a team's accounts: add, remove, reset, role, list, API keys",
    "collections": "who reads what: collections of folders, granted to accounts",
    "audit": "the audit trail: who asked what, when, and the sources shown or opened",
    "cards": "each document's card (organisation, period, kind) that questions are routed by; corrections",
}
RAG_COMMANDS = ("ask", "chat", "summarize", "compare", "model")
ADMIN_COMMANDS = ("users", "collections", "audit", "cards")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="sourcier",
        description="sourcier: private questions over your documents, nothing leaves the machine.",
        epilog="commands:\n" + "\n".join(f"  {name:<9} {what}" for name, what in COMMANDS.items())
        + "\n\n'sourcier COMMAND --help' shows a command's options.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )  # fmt: skip
    p.add_argument("--config", type=Path, help="settings TOML file (default: ./sourcier.toml if present)")
    p.add_argument("--store", type=Path, help="store folder (overrides paths.store_dir)")
    p.add_argument("command", choices=list(COMMANDS), metavar="COMMAND", help="one of: " + ", ".join(COMMANDS))
    p.add_argument("args", nargs=argparse.REMAINDER, help="the command's own arguments")
    return p


def entry_point(command: str) -> Callable[[list[str]], int]:
    """The ``main(argv)`` of the package that runs ``command`` (imported now, and only it)."""
    if command == "ingest":
        from ingest.__main__ import main
    elif command in RAG_COMMANDS:
        from rag.__main__ import main
    elif command == "serve":
        from api.__main__ import main
    elif command == "page":
        from ui.__main__ import main
    elif command in ADMIN_COMMANDS:
        from admin.__main__ import main
    else:
        from evaluation.__main__ import main
    return main


def forwarded(command: str, config: Path | None, store: Path | None, args: list[str]) -> list[str]:
    """The arguments the entry point gets: the global options where it reads them, then the command's own."""
    options = ["--config", str(config)] if config is not None else []
    if command in ("ingest", *RAG_COMMANDS):
        options += ["--store", str(store)] if store is not None else []
    if command in ADMIN_COMMANDS:  # python -m admin: the global options, then users|collections
        return [*options, *(["--store", str(store)] if store is not None else []), command, *args]
    if command in RAG_COMMANDS:  # python -m rag reads --config/--store before the command only
        moved, rest = _global_options(args)
        return [*options, *moved, command, *rest]
    return [*options, *args]


def _global_options(args: list[str]) -> tuple[list[str], list[str]]:
    """``--config``/``--store`` written after a rag command, taken out of its arguments (up to a ``--``)."""
    moved: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest += args[i:]
            break
        name = arg.split("=", 1)[0]
        if name in ("--config", "--store"):
            if "=" in arg:
                moved.append(arg)
            else:
                moved += args[i : i + 2]
                i += 1
        else:
            rest.append(arg)
        i += 1
    return moved, rest


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.store is not None:
        if args.command == "evaluate":
            parser.error("evaluate builds its own stores: --store does not apply (see sourcier evaluate --help)")
        if args.command in ("serve", "page"):  # read by the settings of the process that serves
            os.environ["SOURCIER_PATHS__STORE_DIR"] = str(args.store.resolve())
    return entry_point(args.command)(forwarded(args.command, args.config, args.store, args.args))


if __name__ == "__main__":
    sys.exit(main())
