"""``python -m api`` (also ``python -m rag serve``, ``sourcier-api``): start the HTTP API with uvicorn.

Listens on ``server.api_address`` (else ``server.address``):``server.api_port`` (127.0.0.1:8502 by default);
refuses any address beyond this machine while the store has no accounts (unless ``server.api_key`` is set).
Everything else comes from the settings, as for the page and the CLI.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import rag  # noqa: F401  (offline switches set before any library loads)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rag serve", description="sourcier's HTTP API (OpenAI-compatible).")
    p.add_argument("--config", type=Path, help="settings TOML file (default: ./sourcier.toml if present)")
    p.add_argument("--host", help="address to listen on (overrides server.api_address)")
    p.add_argument("--port", type=int, help="port (overrides server.api_port)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rag.errors import SourcierError
    from rag.settings import load_settings

    try:
        settings = load_settings(args.config)
        host = args.host or settings.server.api_host()
        port = args.port or settings.server.api_port
        from rag.accounts import check_exposure

        check_exposure(host, settings.paths.store_dir, "the API", key_set=settings.server.api_key is not None)
        from api.server import create_app
        from service import build_service

        service = build_service(settings)
        app = create_app(service)
    except SourcierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    from ingest.watch import start_watcher, stop_watcher

    watcher = start_watcher(settings, args.config)  # paths.watch: kept in step by a process of its own
    try:
        uvicorn.run(
            app,
            host=host,
            port=port,
            log_level="info",
            server_header=False,
            timeout_graceful_shutdown=settings.server.shutdown_grace_s,
        )
    finally:
        stop_watcher(watcher)
        service.stop_background()  # ingest.summaries: its summary in progress is cancelled (what it made is kept)
    return 0


if __name__ == "__main__":
    sys.exit(main())
