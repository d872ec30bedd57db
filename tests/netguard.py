"""Refuse and record every network connection that would leave this machine (tests only).

Installed in a process by ``install()`` (or, for subprocesses, by the ``sitecustomize.py`` that
``guard_env`` writes): connecting or sending to anything but loopback, and resolving any host name but
``localhost``, raises ``OSError`` and appends one JSON line to the file named by ``NETGUARD_LOG``: what
was attempted, and which library did it (the first frame outside the socket machinery).
"""

from __future__ import annotations

import ipaddress
import json
import os
import socket
import sys
import traceback
from pathlib import Path

_ALLOWED_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}
_PLUMBING = ("socket.py", "netguard.py", "ssl.py", "selectors.py", "asyncio", "http/client.py", "urllib3")


def _local(host: object) -> bool:
    if host in (None, "", b""):
        return True
    host = host.decode() if isinstance(host, bytes) else str(host)
    if host.lower() in _ALLOWED_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _culprit() -> str:
    for frame in reversed(traceback.extract_stack()[:-3]):
        if not any(p in frame.filename for p in _PLUMBING):
            parts = Path(frame.filename).parts
            if "site-packages" in parts:
                return parts[parts.index("site-packages") + 1]
            return f"{frame.filename}:{frame.lineno}"
    return "?"


def _refuse(kind: str, target: object) -> None:
    entry = {"kind": kind, "target": repr(target), "by": _culprit(), "pid": os.getpid(), "argv": sys.argv[:3]}
    log = os.environ.get("NETGUARD_LOG")
    if log:
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(entry) + "\n")
    raise OSError(101, f"network access refused by the test guard: {kind} {target!r}")


def install() -> None:
    real_connect, real_connect_ex, real_sendto = socket.socket.connect, socket.socket.connect_ex, socket.socket.sendto
    real_getaddrinfo = socket.getaddrinfo

    def _check(sock: socket.socket, address: object, kind: str) -> None:
        inet = sock.family in (socket.AF_INET, socket.AF_INET6)
        if inet and isinstance(address, tuple) and not _local(address[0]):
            _refuse(kind, address)

    def connect(self, address):  # type: ignore[no-untyped-def]
        _check(self, address, "connect")
        return real_connect(self, address)

    def connect_ex(self, address):  # type: ignore[no-untyped-def]
        _check(self, address, "connect")
        return real_connect_ex(self, address)

    def sendto(self, data, *args):  # type: ignore[no-untyped-def]
        _check(self, args[-1], "sendto")
        return real_sendto(self, data, *args)

    def getaddrinfo(host, *args, **kwargs):  # type: ignore[no-untyped-def]
        if not _local(host):
            _refuse("resolve", host)
        return real_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]
    socket.socket.sendto = sendto  # type: ignore[method-assign]
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = lambda host: getaddrinfo(host, None)[0][4][0]  # type: ignore[assignment]


def guard_env(folder: Path, log: Path, base: dict[str, str]) -> dict[str, str]:
    """Environment for a subprocess that installs the guard at start-up (also across exec)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text("import tests.netguard\ntests.netguard.install()\n", encoding="utf-8")
    repo = Path(__file__).resolve().parent.parent
    env = dict(base)
    env["PYTHONPATH"] = os.pathsep.join([str(folder), str(repo), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["NETGUARD_LOG"] = str(log)
    return env
