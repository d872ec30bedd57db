"""Servers started by tests and benchmarks (Chroma, llama.cpp's server, our API, the page): a free loopback
port, start in a process group of its own, wait until it answers, stop by process (group) id."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx

from devkit import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(
    cmd: list[str], env: dict[str, str] | None = None, cwd: Path = REPO, keep_stderr: bool = True
) -> subprocess.Popen:
    """``cmd`` in its own process group (so stopping it stops its children); its stderr kept for the error
    message of a server that dies at start (``keep_stderr=False`` for long runs of chatty servers: a full
    pipe would block them)."""
    stderr = subprocess.PIPE if keep_stderr else subprocess.DEVNULL
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)


def stop(proc: subprocess.Popen, grace_s: float = 15) -> None:
    """Stop a server and its children by process (group) id: SIGTERM, then SIGKILL after ``grace_s``."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    if proc.stderr:
        proc.stderr.close()


def wait_for(url: str, proc: subprocess.Popen, seconds: float = 120, headers: dict[str, str] | None = None) -> None:
    """Until ``url`` answers below 500; an error naming the server's last words if it exits first."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            error = proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            raise AssertionError(f"server exited with {proc.returncode}: {error}")
        try:
            if httpx.get(url, timeout=2, headers=headers, trust_env=False).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise AssertionError(f"{url} did not come up in {seconds} s")
