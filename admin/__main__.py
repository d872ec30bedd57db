"""``python -m admin``: people and collections of a store, from a terminal.

    python -m admin users add alice --admin       the first account must be an admin (the password is asked)
    python -m admin users add bob                 a member: reads the collections granted to them
    python -m admin users list | remove | reset | role NAME admin|member
    python -m admin users key bob                 a new API key for bob, shown once (keys | revoke-key ID)
    python -m admin collections create hr --path ./docs/hr
    python -m admin collections grant hr bob      (revoke, add-path, remove, list)
    python -m admin audit --user bob --last 20    the audit trail (--json: as kept)
    python -m admin cards list                    each document's card: organisation, period, kind (--json)
    python -m admin cards set ADOBE_2015_10K.pdf --year 2015 --organisation "Adobe Inc."   a correction, kept

Passwords are read from the terminal (twice), or from the first line of standard input with
``--password-stdin``; never from the command line, where other users of the machine could see them.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rag.accounts import AccessError, Accounts
from rag.audit import AuditLog
from rag.search.cards import CardError

EXIT_OK, EXIT_ERROR = 0, 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m admin", description="People and collections of a sourcier store.")
    p.add_argument("--config", type=Path, help="settings TOML file (default: ./sourcier.toml if present)")
    p.add_argument("--store", type=Path, help="store folder (overrides paths.store_dir)")
    top = p.add_subparsers(dest="group", required=True)

    users = top.add_parser("users", help="accounts: add, remove, reset, role, list, key, keys, revoke-key")
    u = users.add_subparsers(dest="action", required=True)
    add = u.add_parser("add", help="a new account (the first one must be an admin)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may read everything and manage people and collections")
    add.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    reset = u.add_parser("reset", help="a new password (the account's page sessions end)")
    reset.add_argument("name")
    reset.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    u.add_parser("remove", help="remove an account, its keys, sessions and grants").add_argument("name")
    role = u.add_parser("role", help="make an account admin or member")
    role.add_argument("name")
    role.add_argument("role", choices=["admin", "member"])
    u.add_parser("list", help="the accounts, their roles and the collections they read")
    u.add_parser("key", help="a new API key for an account, shown once").add_argument("name")
    u.add_parser("keys", help="API keys (ids, not the keys)").add_argument("name", nargs="?")
    u.add_parser("revoke-key", help="revoke an API key by its id").add_argument("id")

    collections = top.add_parser("collections", help="collections: create, add-path, remove, grant, revoke, list")
    c = collections.add_subparsers(dest="action", required=True)
    create = c.add_parser("create", help="a named set of folders or files")
    create.add_argument("name")
    create.add_argument("--path", action="append", type=Path, required=True, help="a folder or file (repeatable)")
    more = c.add_parser("add-path", help="add folders or files to a collection")
    more.add_argument("name")
    more.add_argument("--path", action="append", type=Path, required=True, help="a folder or file (repeatable)")
    c.add_parser("remove", help="remove a collection (its documents stay in the store)").add_argument("name")
    for action in ("grant", "revoke"):
        one = c.add_parser(action, help=f"{action} reading a collection to an account")
        one.add_argument("name")
        one.add_argument("user")
    c.add_parser("list", help="collections, their folders and readers")

    audit = top.add_parser("audit", help="the audit trail: who asked what, when, and the sources shown or opened")
    audit.add_argument("--user", help="only this account's records")
    audit.add_argument("--last", type=int, default=50, help="how many of the latest records (default 50)")
    audit.add_argument("--json", action="store_true", help="the records as JSON lines, as kept")

    cards = top.add_parser("cards", help="each document's card (organisation, period, kind), and corrections")
    k = cards.add_subparsers(dest="action", required=True)
    k.add_parser("list", help="the cards").add_argument("--json", action="store_true", help="as JSON lines")
    one = k.add_parser("set", help="correct a document's card (kept when it is ingested again)")
    one.add_argument("document", help="a document's name or path, as --in takes it")
    for name in ("title", "organisation", "year", "quarter", "date"):
        one.add_argument(f"--{name}", help=f"the {name} ('' forgets the correction)")
    one.add_argument("--type", dest="doc_type", help="the kind: annual report, contract, policy... ('' forgets)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from rag.errors import SourcierError
    from rag.settings import load_settings

    try:
        settings = load_settings(args.config)
        if args.store:
            settings.paths.store_dir = args.store
        if args.group == "audit":
            show_audit(AuditLog.of_store(settings.paths.store_dir), args)
            return EXIT_OK
        if args.group == "cards":
            if args.action == "set" and settings.server.audit:
                changes = {k: getattr(args, k) for k in CARD_OPTIONS if getattr(args, k) is not None}
                AuditLog.of_store(settings.paths.store_dir).record(
                    "admin", None, action="cards set", name=args.document, **changes
                )
            return document_cards(settings, args)
        accounts = Accounts.of_store(settings.paths.store_dir)
        trail = AuditLog.of_store(settings.paths.store_dir) if settings.server.audit else None
        try:
            if trail is not None and args.action not in ("list", "keys"):  # changes only (never a password)
                named = {k: v for k, v in vars(args).items() if k in ("name", "user", "role", "id") and v is not None}
                paths = [str(p) for p in getattr(args, "path", None) or []]
                trail.record(
                    "admin", None, action=f"{args.group} {args.action}", **named, **({"paths": paths} if paths else {})
                )
            if args.group == "users":
                users(accounts, args)
            else:
                changed = collections(accounts, args)
                if changed:
                    from ingest.pipeline import sync_collections

                    print(f"{sync_collections(settings, wait=True)} chunk(s) of the store now carry their collections")
        finally:
            accounts.close()
        return EXIT_OK
    except SourcierError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except (KeyboardInterrupt, EOFError):
        return 130


def users(accounts: Accounts, args: argparse.Namespace) -> None:
    if args.action == "add":
        if not accounts.configured() and not args.admin:
            raise AccessError("the first account must be an admin: add --admin")
        person = accounts.add(args.name, password(args.password_stdin), "admin" if args.admin else "member")
        print(f"{person.name} added ({person.role})")
    elif args.action == "reset":
        accounts.person(args.name)
        accounts.reset(args.name, password(args.password_stdin))
        print(f"password of {args.name} changed; their page sessions have ended")
    elif args.action == "remove":
        accounts.remove(args.name)
        print(f"{args.name} removed")
    elif args.action == "role":
        accounts.set_role(args.name, args.role)
        print(f"{args.name} is now {args.role}")
    elif args.action == "list":
        for person in accounts.people():
            readable = "everything" if person.is_admin else ", ".join(c.name for c in accounts.readable(person)) or "-"
            print(f"{person.name:<24} {person.role:<7} reads: {readable}")
    elif args.action == "key":
        ident, key = accounts.new_key(args.name)
        print(f"API key {ident} for {args.name} (shown once; send it as 'Authorization: Bearer <key>'):")
        print(key)
    elif args.action == "keys":
        for ident, person, made, revoked in accounts.keys(args.name):
            state = f"revoked {_when(revoked)}" if revoked else "live"
            print(f"{ident:<14} {person:<24} made {_when(made)}  {state}")
    elif args.action == "revoke-key":
        accounts.revoke_key(args.id)
        print(f"API key {args.id} revoked")


def collections(accounts: Accounts, args: argparse.Namespace) -> bool:
    """Run a collections action; True when documents may have changed collections (the store follows)."""
    if args.action == "create":
        made = accounts.create_collection(args.name, args.path)
        print(f"collection {made.name} ({made.id}): {', '.join(map(str, made.paths))}")
        return True
    if args.action == "add-path":
        accounts.add_paths(args.name, args.path)
        print(f"collection {args.name}: {', '.join(map(str, accounts.collection(args.name).paths))}")
        return True
    if args.action == "remove":
        accounts.remove_collection(args.name)
        print(f"collection {args.name} removed")
        return True
    if args.action == "grant":
        accounts.grant(args.name, args.user)
        print(f"{args.user} may read {args.name}")
    elif args.action == "revoke":
        accounts.revoke(args.name, args.user)
        print(f"{args.user} may no longer read {args.name}")
    elif args.action == "list":
        for c in accounts.collections():
            print(f"{c.name} ({c.id})\n  folders: {', '.join(map(str, c.paths))}")
            print(f"  readers: {', '.join(c.readers) or '-'}")
    return False


def show_audit(trail: AuditLog, args: argparse.Namespace) -> None:
    for entry in trail.last(args.last, args.user):
        if args.json:
            print(json.dumps(entry, ensure_ascii=False))
            continue
        who = entry.get("person") or ("(terminal)" if entry["event"] == "admin" else "(owner)")
        what = entry.get("question") or entry.get("file") or ""
        if entry["event"] == "admin":
            what = " ".join(str(entry[k]) for k in ("action", "name", "user", "role") if entry.get(k))
        elif entry["event"] in ("login refused", "key refused"):
            what = " ".join(str(entry[k]) for k in ("name", "address", "path") if entry.get(k))
        sources = ", ".join(f"[{s['number']}] {s['file']}" for s in entry.get("sources", []) if s.get("cited"))
        print(f"{entry['at'][:19]}  {who:<16} {entry['event']:<14} {what}" + (f"  -> {sources}" if sources else ""))


def document_cards(settings: Any, args: argparse.Namespace) -> int:
    """List the documents' cards, or keep a correction of one."""
    from rag.models.embedding import embedding_model_info
    from rag.search.cards import card_store
    from rag.search.scope import resolve_scope
    from rag.search.store import open_store

    store = open_store(settings, embedding_model_info(settings), create=False)
    cards = card_store(settings.paths.store_dir)
    try:
        if args.action == "set":
            chosen = resolve_scope(store.documents(), [args.document], settings.paths.store_dir)
            values = {k: getattr(args, k) for k in CARD_OPTIONS if getattr(args, k) is not None}
            if chosen is None or not values:
                raise CardError("say what to set: --title, --organisation, --year, --quarter, --date or --type")
            for root, source in sorted(chosen.documents or ()):
                cards.set_fields(root, source, values)
            shown = chosen.documents or frozenset()
        else:
            shown = None
        for card in cards.cards(store):
            if shown is not None and (card.root, card.source) not in shown:
                continue
            if getattr(args, "json", False):
                print(json.dumps(card.as_dict(), ensure_ascii=False))
            else:
                edited = f"  (corrected: {', '.join(card.edited)})" if card.edited else ""
                print(f"{card.root}/{card.source}: {card.label().rsplit(' (', 1)[0]}{edited}")
    finally:
        cards.close()
    return EXIT_OK


CARD_OPTIONS = ("title", "organisation", "year", "quarter", "date", "doc_type")


def password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise AccessError("the two passwords differ")
    return first


def _when(at: float) -> str:
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%d %H:%M UTC")


if __name__ == "__main__":
    sys.exit(main())
