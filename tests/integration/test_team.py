"""A team on real components: two people, two collections on the same subject, the real embedding model,
reranker and a real small GGUF (SmolLM2). Each person gets only their own passages through `sourcier ask
--user`, the LangChain retriever, the API (a real `python -m api` process with personal keys) and the page (a
real `python -m ui` in Debian's chromium, with its login form). Servers are stopped by their process id."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from devkit.models import smollm_path
from devkit.processes import free_port, stop
from tests.integration.test_page_browser import ARTIFACTS, CHROMIUM, launch_chromium, page_env, start_page

pytestmark = pytest.mark.integration
PASSWORD = "correct horse battery"
QUESTION = "How many weeks does parental leave last?"
DOCS = {
    "hr/leave-policy.md": "# Leave policy\n\nParental leave lasts 16 weeks at full pay. Parents may split the weeks.",
    "hr/salaries.md": "# Salaries\n\nThe salary grid rises by 3 percent in March for every grade.",
    "legal/leave-memo.md": "# Memo on leave\n\nParental leave for the legal team lasts 20 weeks, then part time.",
    "legal/contract.md": "# Contract template\n\nThe notice period is three months for either party.",
}


def run(home: Path, *args: str, stdin: str | None = None, **env: str) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    base |= {"SOURCIER_PATHS__STORE_DIR": str(home / "store"), "SOURCIER_LLM__MODEL_PATH": str(smollm_path())}
    base |= {"SOURCIER_LLM__MAX_TOKENS": "40", **env}
    return subprocess.run(
        [sys.executable, "-m", "sourcier", *args], cwd=home, env=base, input=stdin, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    home = tmp_path_factory.mktemp("team")
    for name, text in DOCS.items():
        (home / "docs" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "docs" / name).write_text(text, encoding="utf-8")
    steps = [
        ("ingest", str(home / "docs")),
        ("users", "add", "root", "--admin", "--password-stdin"),
        ("users", "add", "alice", "--password-stdin"),
        ("users", "add", "bob", "--password-stdin"),
        ("collections", "create", "hr", "--path", str(home / "docs" / "hr")),
        ("collections", "create", "legal", "--path", str(home / "docs" / "legal")),
        ("collections", "grant", "hr", "alice"),
        ("collections", "grant", "legal", "bob"),
    ]
    for step in steps:
        out = run(home, *step, stdin=PASSWORD + "\n")
        assert out.returncode == 0, f"{step}: {out.stderr}"
    return home


def folders(sources) -> set[str]:
    return {s.split("/")[0] for s in sources}


@pytest.mark.parametrize(("user", "folder"), [("alice", "hr"), ("bob", "legal")])
def test_sourcier_ask_as_each_person_cites_only_their_collection(team, user, folder):
    out = run(team, "ask", "--user", user, "--json", QUESTION)
    assert out.returncode in (0, 1), out.stderr
    answer = json.loads(out.stdout)
    assert answer["sources"] and folders(s["file"] for s in answer["sources"]) == {folder}
    named = run(team, "ask", "--user", user, "--in", "legal/leave-memo.md" if user == "alice" else "hr", QUESTION)
    assert named.returncode == 2 and "no document or folder in the store matches" in named.stderr
    trail = run(team, "audit", "--user", user, "--json")
    [asked] = [json.loads(line) for line in trail.stdout.splitlines() if '"ask"' in line]
    assert asked["question"] == QUESTION and asked["via"] == "terminal"
    assert [s["file"] for s in asked["sources"]] == [s["file"] for s in answer["sources"]]


def test_the_langchain_retriever_given_a_user(team):
    from rag.langchain import SourcierRetriever
    from rag.search.store import drop_cached_stores
    from rag.settings import PathSettings, Settings

    settings = Settings(paths=PathSettings(store_dir=team / "store"))
    try:
        for user, folder in (("alice", "hr"), ("bob", "legal"), (None, None)):
            docs = SourcierRetriever.from_settings(settings, k=4, user=user).invoke(QUESTION)
            found = folders(d.metadata["source"] for d in docs)
            assert found == ({folder} if folder else {"hr", "legal"})
    finally:
        drop_cached_stores()


def call(url: str, key: str | None, method: str = "GET") -> tuple[int, dict]:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"Bearer {key}"} if key else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_api_process_reads_as_the_holder_of_each_key(team):
    keys = {}
    for user in ("alice", "bob"):
        out = run(team, "users", "key", user)
        keys[user] = out.stdout.strip().splitlines()[-1]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env |= {"SOURCIER_PATHS__STORE_DIR": str(team / "store"), "SOURCIER_SERVER__API_PORT": str(port)}
    log = (team / "api.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "api"], cwd=team, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if call(f"{url}/health", None)[0] == 200:
                    break
            except OSError:
                time.sleep(0.5)
        assert call(f"{url}/v1/documents", None)[0] == 401
        for user, folder in (("alice", "hr"), ("bob", "legal")):
            status, listed = call(f"{url}/v1/documents", keys[user])
            assert status == 200 and folders(d["source"] for d in listed["data"]) == {folder}
        assert call(f"{url}/v1/documents/legal/contract.md", keys["alice"], "DELETE")[0] == 404
        assert call(f"{url}/v1/documents", keys["bob"])[1]["data"], "bob's documents are still there"
    finally:
        stop(proc, grace_s=20)
    assert proc.poll() is not None


def test_the_page_logs_each_person_in_and_shows_their_own(team):
    playwright = pytest.importorskip("playwright.sync_api")
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (bash setup.sh installs it)")
    url, proc = start_page(team, page_env(team / "docs", team / "store", free_port()))
    ARTIFACTS.mkdir(exist_ok=True)
    try:
        with playwright.sync_playwright() as p:
            browser = launch_chromium(p)
            try:
                for user, theirs, other in (
                    ("alice", "leave-policy.md", "leave-memo.md"),
                    ("bob", "leave-memo.md", "salaries.md"),
                ):
                    page = browser.new_page()
                    page.goto(url)
                    page.get_by_label("Name", exact=True).fill(user)
                    page.get_by_label("Password", exact=True).fill("not the password")
                    page.get_by_role("button", name="Log in").click()
                    page.get_by_text("wrong name or password").wait_for(timeout=60_000)
                    page.get_by_label("Password", exact=True).fill(PASSWORD)
                    page.get_by_role("button", name="Log in").click()
                    page.get_by_text(f"Signed in as {user}").wait_for(timeout=60_000)
                    sidebar = page.get_by_test_id("stSidebar")
                    sidebar.get_by_text(theirs).first.wait_for(timeout=30_000)
                    assert other not in sidebar.inner_text()
                    box = page.get_by_test_id("stChatInputTextArea")
                    box.fill(QUESTION)
                    box.press("Enter")
                    page.get_by_text("Sources").first.wait_for(timeout=180_000)
                    # the sources' expanders come a moment after the heading above them (and the page may draw
                    # itself once more): read them until they are there
                    for _ in range(120):
                        labels = [t.strip() for t in page.get_by_test_id("stExpander").all_inner_texts()]
                        sources = [t for t in labels if re.search(r"\[\d+\] ", t)]
                        if sources:
                            break
                        page.wait_for_timeout(500)
                    folder = "hr/" if user == "alice" else "legal/"
                    assert sources and all(folder in t for t in sources), labels
                    page.screenshot(path=str(ARTIFACTS / f"team-{user}.png"), full_page=True)
                    page.close()
            finally:
                browser.close()
    finally:
        stop(proc, grace_s=20)
    assert proc.poll() is not None
