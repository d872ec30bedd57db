"""The LangChain example, run as a user runs it: our retriever in a chain with langchain-community's ChatLlamaCpp
on the same GGUF, langchain-chroma over our store, and our chain as a Runnable, on the ingested samples."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from devkit.models import smollm_path
from tests.conftest import REPO, SAMPLE_DATA
from tests.integration.test_real_ingest import cli

pytestmark = pytest.mark.integration


def test_the_langchain_example_answers_from_our_store_with_the_same_gguf(tmp_path):
    pytest.importorskip("langchain_community", reason="pip install -e '.[langchain]' (bash setup.sh installs it)")
    store = tmp_path / "store"
    out = cli("ingest", str(SAMPLE_DATA), "--store", str(store))
    assert out.returncode == 0, out.stderr
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    env |= {"SOURCIER_PATHS__STORE_DIR": str(store), "SOURCIER_LLM__MODEL_PATH": str(smollm_path())}
    run = subprocess.run(
        [sys.executable, "examples/langchain_chain.py", "How long did the storage outage last?"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    lines = run.stdout.splitlines()
    first = lines[lines.index("1. Your chain (SourcierRetriever | prompt | ChatLlamaCpp):") + 1]
    assert first.strip()  # ChatLlamaCpp wrote something from our passages
    second = run.stdout.split("2. langchain-chroma")[1].split("3. ")[0]
    assert "incident-postmortem.html: 'Postmortem" in second  # the vector store reads our chunks and their places
    third = run.stdout.split("3. sourcier's own chain as a Runnable:")[1].strip()
    assert third  # our answer (with sources where the small model cites them)
    assert "Traceback" not in run.stderr
