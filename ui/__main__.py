"""python -m ui: start the page with the server settings (address, port) and usage statistics off; any
address beyond this machine is refused while the store has no accounts.

Equivalent to ``streamlit run ui/app.py`` with the repository's ``.streamlit/config.toml``, but the
address and port come from sourcier's settings (``SOURCIER_SERVER__ADDRESS``, ``--config``).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def streamlit_command(settings: object, extra: list[str]) -> list[str]:
    server = settings.server  # type: ignore[attr-defined]
    app = Path(__file__).resolve().parent / "app.py"
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", server.page_host(),
        "--server.port", str(server.port),
        "--server.headless", "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--server.maxUploadSize", str(max(1, int(server.upload_max_mb + 0.999))),
        *extra,
    ]  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ui", description=__doc__)
    ap.add_argument("--config", type=Path, help="a sourcier.toml")
    args, extra = ap.parse_known_args(argv)
    from rag.errors import SourcierError
    from rag.settings import load_settings

    try:
        settings = load_settings(args.config)
        from rag.accounts import check_exposure

        check_exposure(settings.server.page_host(), settings.paths.store_dir, "the page")
    except SourcierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    command = streamlit_command(settings, extra)
    if args.config:
        command += ["--", "--config", str(args.config.resolve())]  # the page reads its own arguments
    os.execv(command[0], command)
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main())
