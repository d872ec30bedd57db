"""One command line, `sourcier COMMAND`: each subcommand reaches the entry point it names with the options
where that entry point reads them; `python -m ingest|rag|api|ui|evaluation` keep working."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import sourcier.__main__ as cli
from tests.conftest import REPO


@pytest.fixture
def calls(monkeypatch):
    seen = []
    monkeypatch.setattr(cli, "entry_point", lambda command: lambda argv: seen.append((command, argv)) or 0)
    monkeypatch.setenv("SOURCIER_PATHS__STORE_DIR", "")  # so that teardown restores what was there before
    monkeypatch.delenv("SOURCIER_PATHS__STORE_DIR")
    return seen


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["ingest", "./docs", "--json"], ("ingest", ["./docs", "--json"])),
        (["--store", "s", "ingest", "./docs"], ("ingest", ["--store", "s", "./docs"])),
        (["ask", "How long?", "--in", "a.pdf"], ("ask", ["ask", "How long?", "--in", "a.pdf"])),
        (["--config", "c.toml", "ask", "q"], ("ask", ["--config", "c.toml", "ask", "q"])),
        (["ask", "--store", "s", "q", "--json"], ("ask", ["--store", "s", "ask", "q", "--json"])),
        (["ask", "--store=s", "--", "--store"], ("ask", ["--store=s", "ask", "--", "--store"])),
        (["chat"], ("chat", ["chat"])),
        (["model"], ("model", ["model"])),
        (["serve", "--port", "9000"], ("serve", ["--port", "9000"])),
        (["--config", "c.toml", "page"], ("page", ["--config", "c.toml"])),
        (["evaluate", "piaf", "--limit", "5"], ("evaluate", ["piaf", "--limit", "5"])),
    ],
)
def test_each_command_reaches_its_entry_point_with_its_options(calls, argv, expected):
    assert cli.main(argv) == 0
    assert calls == [expected]


def test_store_reaches_the_page_and_the_api_through_their_settings(calls, tmp_path):
    cli.main(["--store", str(tmp_path), "serve"])
    assert os.environ["SOURCIER_PATHS__STORE_DIR"] == str(tmp_path.resolve())


def test_store_is_refused_where_it_means_nothing(calls, capsys):
    with pytest.raises(SystemExit):
        cli.main(["--store", "s", "evaluate", "piaf"])
    assert "evaluate builds its own stores" in capsys.readouterr().err and not calls


def test_an_unknown_command_lists_the_known_ones(capsys):
    with pytest.raises(SystemExit):
        cli.main(["translate"])
    assert "invalid choice: 'translate'" in capsys.readouterr().err


def test_the_real_entry_points_are_the_existing_mains():
    import api.__main__
    import evaluation.__main__
    import ingest.__main__
    import rag.__main__
    import ui.__main__

    assert cli.entry_point("ingest") is ingest.__main__.main and cli.entry_point("ask") is rag.__main__.main
    assert cli.entry_point("serve") is api.__main__.main and cli.entry_point("page") is ui.__main__.main
    assert cli.entry_point("evaluate") is evaluation.__main__.main


def run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    return subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "sourcier", *args], cwd=REPO, env=env,
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_help_names_every_command_and_imports_none_of_them():
    out = run("--help")
    assert out.returncode == 0 and all(f"  {name} " in out.stdout for name in cli.COMMANDS)
    imported = {line.split("|")[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time")}
    assert not imported & {"rag", "ingest", "api", "ui", "evaluation", "torch", "chromadb"}


def test_a_commands_own_help_and_errors_come_from_its_entry_point(tmp_path):
    assert "usage: python -m ingest" in run("ingest", "--help").stdout
    out = run("ask", "--store", str(tmp_path / "empty"), "How long did the outage last?")
    assert out.returncode == 2 and "no store at" in out.stderr and "run python -m ingest first" in out.stderr
