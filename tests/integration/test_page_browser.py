"""The page in a real browser: Debian's chromium driven by Playwright against a real `python -m ui`
(Streamlit on 127.0.0.1), a real store of the sample documents and a real small GGUF (SmolLM2).

Asks a question, waits for the streamed answer, opens a source, uploads a file and sees it listed;
saves screenshots under artifacts/. The server is stopped by its process id.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from devkit.models import smollm_path
from devkit.processes import free_port, stop
from tests.conftest import REPO, SAMPLE_DATA
from tests.integration.test_real_ingest import cli

pytestmark = pytest.mark.integration
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = REPO / "artifacts"


def page_env(docs: Path, store: Path, port: int, base: dict[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in (base or os.environ).items() if not k.startswith("SOURCIER_")}
    return env | {
        "SOURCIER_PATHS__STORE_DIR": str(store),
        "SOURCIER_PATHS__DOCS_DIR": str(docs),
        "SOURCIER_LLM__MODEL_PATH": str(smollm_path()),
        "SOURCIER_LLM__MAX_TOKENS": "60",
        "SOURCIER_RETRIEVAL__K": "3",
        "SOURCIER_SERVER__PORT": str(port),
        "SOURCIER_SERVER__LANGUAGE": "en",
    }


def start_page(home: Path, env: dict[str, str]) -> tuple[str, subprocess.Popen]:
    """`python -m ui` in its own process group; returns its URL once it answers its health check."""
    log = (home / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ui"], cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{env['SOURCIER_SERVER__PORT']}"
    deadline = time.time() + 90
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                if r.status == 200:
                    return url, proc
        except OSError:
            time.sleep(0.5)
    stop(proc, grace_s=20)
    pytest.fail("the page did not start: " + (home / "streamlit.log").read_text())


def launch_chromium(p):
    return p.chromium.launch(
        executable_path=str(CHROMIUM),
        args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
    )


def ask_in_browser(page, url: str, question: str) -> None:
    page.goto(url)
    page.get_by_text("Ask your documents").first.wait_for(timeout=60_000)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")
    page.get_by_test_id("stChatMessage").nth(1).wait_for(timeout=120_000)
    page.get_by_text("Sources").first.wait_for(timeout=180_000)  # shown once the answer is complete


def choose_file(page, path) -> None:
    """Choose a file in the uploader, as a user does, and wait until the server has it. Right after a source
    was opened, headless chromium sometimes never delivers the choice (seen in about 4 runs of 10 on
    2026-11-24, the page idle, no error): the page is then reloaded and the file chosen again, as a user
    whose choice did not show would do."""
    for attempt in range(2):
        with contextlib.suppress(Exception):  # the running indicator may never show: the page is idle
            page.get_by_test_id("stStatusWidget").wait_for(state="hidden", timeout=10_000)
        page.locator("input[type=file]").first.set_input_files(str(path))
        try:
            page.get_by_test_id("stFileChipName").first.wait_for(timeout=15_000 if attempt == 0 else 30_000)
            return
        except Exception:
            if attempt == 1:
                raise
            print("the chosen file did not reach the page: reloading it and choosing again")
            page.reload()
            page.get_by_text("Ask your documents").first.wait_for(timeout=60_000)


@pytest.fixture(scope="module")
def page_server(tmp_path_factory):
    if not CHROMIUM.exists():
        pytest.fail("Debian's chromium is not installed (bash setup.sh installs it)")
    home = tmp_path_factory.mktemp("page")
    docs, store = home / "docs", home / "store"
    shutil.copytree(SAMPLE_DATA, docs)
    assert cli("ingest", str(docs), "--store", str(store), "-q").returncode == 0
    url, proc = start_page(home, page_env(docs, store, free_port()))
    try:
        yield url, docs, proc
    finally:
        stop(proc, grace_s=20)


def test_the_page_listens_on_loopback_only(page_server):
    url, _, proc = page_server
    port = int(url.rsplit(":", 1)[1])
    out = subprocess.run(["ss", "-ltnp"], capture_output=True, text=True).stdout if shutil.which("ss") else ""
    listening = [line for line in out.splitlines() if f":{port} " in line]
    assert all("127.0.0.1:" in line for line in listening), listening


def test_ask_read_open_a_source_upload_in_a_real_browser(page_server, tmp_path):
    playwright = pytest.importorskip("playwright.sync_api")
    url, docs, _ = page_server
    ARTIFACTS.mkdir(exist_ok=True)
    new_doc = tmp_path / "garden-notes.txt"
    new_doc.write_text("The greenhouse tomatoes were planted on 12 March and watered every second day.\n")
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            ask_in_browser(page, url, "What is the hotel cap per night in Paris?")
            page.get_by_test_id("stSidebar").get_by_text("travel-expenses.docx").first.wait_for(timeout=30_000)
            assistant = page.get_by_test_id("stChatMessage").nth(1)
            first_source = assistant.get_by_test_id("stExpander").first
            first_source.click()
            first_source.get_by_test_id("stMarkdownContainer").first.wait_for(timeout=10_000)
            passage = first_source.inner_text()
            assert "score" in passage and len(passage) > 80
            page.screenshot(path=str(ARTIFACTS / "page-answer.png"), full_page=True)

            choose_file(page, new_doc)  # the upload has reached the server
            page.get_by_role("button", name="Add to the documents").click()
            page.get_by_text("1 added").first.wait_for(timeout=180_000)
            page.get_by_test_id("stSidebar").get_by_text("garden-notes.txt").first.wait_for(timeout=30_000)
            page.screenshot(path=str(ARTIFACTS / "page-upload.png"), full_page=True)
        finally:
            browser.close()
    assert (docs / "garden-notes.txt").is_file()


def test_an_opened_pdf_source_shows_its_page_with_the_passage_highlighted(page_server):
    playwright = pytest.importorskip("playwright.sync_api")
    from PIL import Image

    url, _, _ = page_server
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            ask_in_browser(page, url, "Quelle est l'indemnité forfaitaire mensuelle de télétravail ?")
            assistant = page.get_by_test_id("stChatMessage").nth(1)
            sources = assistant.get_by_test_id("stExpander").filter(has_text="politique-teletravail.pdf")
            cited = sources.filter(has_text=" cited")  # " cited", not "not cited"
            source = (cited if cited.count() else sources).first
            source.click()
            image = source.locator("img").first
            image.wait_for(timeout=60_000)
            page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=image.element_handle())
            shot = ARTIFACTS / "page-cited-page.png"
            image.screenshot(path=str(shot))
            page.screenshot(path=str(ARTIFACTS / "page-source-open.png"), full_page=True)
            assert "page" in source.inner_text() and "highlighted" in source.inner_text()
        finally:
            browser.close()
    with Image.open(shot) as im:
        yellow = sum(1 for r, g, b in im.convert("RGB").getdata() if r > 200 and 150 < g < 240 and b < 140)
    assert yellow > 500, "no highlight on the page image"


def test_a_conversation_survives_a_reload_and_a_scoped_question_stays_in_its_document(page_server):
    playwright = pytest.importorskip("playwright.sync_api")
    url, _, _ = page_server
    ARTIFACTS.mkdir(exist_ok=True)
    with playwright.sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            ask_in_browser(page, url, "How long did the storage outage last?")
            page.wait_for_function("() => new URLSearchParams(location.search).has('c')", timeout=30_000)
            saved_url = page.url
            page.reload()
            page.get_by_test_id("stChatMessage").nth(1).wait_for(timeout=60_000)  # the answer is back
            assert "storage outage" in page.get_by_test_id("stChatMessage").first.inner_text()
            assert page.url == saved_url

            sidebar = page.get_by_test_id("stSidebar")
            sidebar.get_by_test_id("stMultiSelect").first.click()
            page.keyboard.type("travel-expenses")
            page.keyboard.press("Enter")
            page.get_by_text("Ask in:").first.wait_for(timeout=30_000)
            page.keyboard.press("Escape")
            box = page.get_by_test_id("stChatInputTextArea")
            box.fill("What is the storage outage duration?")
            box.press("Enter")
            page.get_by_test_id("stChatMessage").nth(3).wait_for(timeout=120_000)
            page.get_by_text("Sources").nth(1).wait_for(timeout=180_000)
            answer = page.get_by_test_id("stChatMessage").nth(3)
            answer.get_by_test_id("stExpander").first.wait_for(timeout=60_000)
            labels: list[str] = []
            deadline = time.time() + 30  # the page may rerun once more (the URL names the conversation)
            while not labels and time.time() < deadline:
                labels = [e.inner_text() for e in answer.get_by_test_id("stExpander").all()]
                time.sleep(0.5)
            page.screenshot(path=str(ARTIFACTS / "page-scoped.png"), full_page=True)
            assert labels and all("travel-expenses.docx" in label for label in labels), labels
        finally:
            browser.close()
