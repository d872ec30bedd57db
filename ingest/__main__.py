"""``python -m ingest PATH...``: bring the store in line with folders and files of documents."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ingest.pipeline import IngestReport

EXIT_OK, EXIT_FILES_FAILED, EXIT_ERROR = 0, 1, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m ingest",
        description="Read documents (PDF, text, Markdown, HTML, Word), cut them into chunks, embed them "
        "locally and keep them in the Chroma store. Only changed files are processed again.",
    )
    p.add_argument("paths", nargs="*", type=Path, help="folders and/or files (default: paths.docs_dir)")
    p.add_argument("--dry-run", action="store_true", help="show what would change, change nothing")
    p.add_argument("--keep-missing", action="store_true", help="keep chunks of files deleted from the folder")
    p.add_argument(
        "--forget",
        type=Path,
        action="append",
        metavar="FOLDER",
        help="remove every chunk ingested from FOLDER (moved or deleted); repeatable; ingests nothing",
    )
    p.add_argument("--wait", action="store_true", help="wait for a running ingest instead of refusing")
    p.add_argument(
        "--watch",
        action="store_true",
        help="keep running: files added, changed, moved or deleted in the folders are ingested or removed a few "
        "seconds after their last write (Ctrl-C or SIGTERM to stop)",
    )
    p.add_argument("--quiet-s", type=float, default=2.0, help="with --watch: seconds a file must be left alone first")
    p.add_argument(
        "--rescan-s", type=float, default=600.0, help="with --watch: a full pass this often (events can be lost)"
    )
    p.add_argument("--nice", type=int, default=0, help=argparse.SUPPRESS)  # a server's watcher: lower priority
    p.add_argument("--parent", type=int, help=argparse.SUPPRESS)  # ... that stops when its server is gone
    p.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="read, chunk and embed on the Ray cluster at ADDRESS ('local:N' starts one here with N CPUs); "
        "overrides ingest.ray_address",
    )
    p.add_argument("--config", type=Path, help="settings TOML file (default: ./sourcier.toml if present)")
    p.add_argument("--store", type=Path, help="store folder (overrides paths.store_dir)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, summary only")
    p.add_argument("--json", action="store_true", help="print the report as JSON (no progress bar, no table)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rich.console import Console

    from rag.errors import SourcierError
    from rag.settings import load_settings

    err = Console(stderr=True)
    try:
        settings = load_settings(args.config)
        if args.store:
            settings.paths.store_dir = args.store
        if args.ray:
            settings.ingest.ray_address = args.ray
        if args.forget:
            from ingest.pipeline import forget_folders

            for folder, n in forget_folders(args.forget, settings, wait=args.wait).items():
                print(f"removed {n} chunks ingested from {folder}")
            return EXIT_OK
        targets = args.paths or [settings.paths.docs_dir]
        if args.watch:
            return watch(targets, settings, args)
        report = _run(targets, settings, args, err)
    except SourcierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted: the next run finishes the work (nothing is left inconsistent)", file=sys.stderr)
        return 130
    if args.json:
        import dataclasses
        import json

        print(json.dumps(dataclasses.asdict(report) | {"ok": report.ok}, indent=2, ensure_ascii=False))
    else:
        from ingest.progress import print_report

        print_report(report, Console())
    return EXIT_OK if report.ok else EXIT_FILES_FAILED


def watch(targets: list[Path], settings, args: argparse.Namespace) -> int:  # noqa: ANN001
    """``--watch``: keep the store in step with the folders until Ctrl-C or SIGTERM; one line per batch."""
    import signal
    import threading

    from ingest.watch import FolderWatch

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())

    def said(batch) -> None:  # noqa: ANN001
        r = batch.report
        parts = [f"+{len(r.added)} new", f"~{len(r.updated)} changed", f"{len(r.failed)} failed"] if r else []
        if batch.removed:
            parts.append(f"-{len(batch.removed)} removed")
        if r is not None and (batch.rescan or r.added or r.updated or r.failed) or batch.removed:
            what = "full pass" if batch.rescan else "changes"
            print(f"{time.strftime('%H:%M:%S')} {what}: {', '.join(parts)}", flush=True)
            for problem in r.failed if r else []:
                print(f"  failed: {problem.source}: {problem.reason}", flush=True)

    if args.nice:
        os.nice(args.nice)
    try:
        folders = FolderWatch(
            targets, settings, quiet_s=args.quiet_s, rescan_s=args.rescan_s, on_batch=said, parent=args.parent
        )
    except NotADirectoryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    print(f"watching {', '.join(map(str, folders.folders))} (Ctrl-C to stop)", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        folders.run(stop)
    print("stopped watching", flush=True)
    return EXIT_OK


def _run(targets: list[Path], settings, args: argparse.Namespace, err) -> IngestReport:
    from ingest.pipeline import ingest_paths
    from ingest.progress import RichProgress

    show = not (args.quiet or args.dry_run or args.json)
    with RichProgress(err, enabled=show) as progress:
        return ingest_paths(
            targets,
            settings,
            dry_run=args.dry_run,
            keep_missing=args.keep_missing,
            wait=args.wait,
            progress=progress,
        )


if __name__ == "__main__":
    sys.exit(main())
