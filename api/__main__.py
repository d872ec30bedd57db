"""``python -m api`` (also ``python -m rag serve``, ``sourcier-api``): start the HTTP API with uvicorn.

Listens on ``server.address``:``server.api_port`` (127.0.0.1:8502 by default). Everything else comes from
the settings, as for the page and the CLI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import rag  # noqa: F401  (offline switches set before any library loads)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rag serve", description="sourcier's HTTP API (OpenAI-compatible).")
    p.add_argument("--config", type=Path, help="settings TOML file (default: ./sourcier.toml if present)")
    p.add_argument("--host", help="address to listen on (overrides server.address)")
    p.add_argument("--port", type=int, help="port (overrides server.api_port)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rag.errors import SourcierError
    from rag.settings import load_settings

    try:
        settings = load_settings(args.config)
        host = args.host or settings.server.address
        port = args.port or settings.server.api_port
        from api.server import create_app
        from service import build_service

        app = create_app(build_service(settings))
    except SourcierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if host not in ("127.0.0.1", "localhost", "::1") and settings.server.api_key is None:
        print(
            f"warning: listening on {host} without server.api_key: anyone who can reach it can read the documents",
            file=sys.stderr,
        )
    import uvicorn

    uvicorn.run(
        app,
        host=host,
        port=port,
        log_level="info",
        server_header=False,
        timeout_graceful_shutdown=settings.server.shutdown_grace_s,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
