"""House rules that can be checked mechanically: import direction, nothing heavy at import, offline."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

FORBIDDEN = {
    "rag": {"streamlit", "ingest", "service", "ui", "evaluation", "api", "fastapi"},
    "ingest": {"streamlit", "service", "ui", "evaluation", "api", "fastapi"},
    "service": {"streamlit", "ui", "evaluation", "api", "fastapi"},  # shared by the page and the API
    "evaluation": {"streamlit", "service", "ui", "api"},
    "api": {"streamlit", "ui", "evaluation"},
    "ui": {"api", "fastapi", "evaluation"},
}


def imported_top_levels(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_imports_flow_one_way(package):
    for path in (REPO / package).rglob("*.py"):
        bad = imported_top_levels(path) & FORBIDDEN[package]
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def run_python(code: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SOURCIER_")}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, env=env, timeout=120, check=True
    ).stdout


def test_importing_the_packages_loads_no_heavy_library():
    out = run_python(
        "import sys, rag, rag.settings, rag.store, rag.embedding, rag.models, rag.llm, rag.answer, rag.retrieval, "
        "ingest, ingest.pipeline, "
        "ingest.__main__, rag.__main__\n"
        "print(sorted(m for m in ('torch', 'sentence_transformers', 'transformers', 'chromadb', 'llama_cpp') "
        "if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_help_does_not_pay_for_torch_or_chroma():
    out = run_python(
        "import sys\nfrom ingest.__main__ import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "print('HEAVY', sorted(m for m in ('torch', 'chromadb') if m in sys.modules))"
    )
    assert "usage: python -m ingest" in out and out.strip().endswith("HEAVY []")


def test_offline_variables_are_forced_on_import(monkeypatch):
    out = run_python(
        "import os; os.environ['HF_HUB_OFFLINE'] = '0'; os.environ['LANGCHAIN_TRACING_V2'] = 'true'\n"
        "import rag\nprint(os.environ['HF_HUB_OFFLINE'], os.environ['LANGCHAIN_TRACING_V2'], "
        "os.environ['ANONYMIZED_TELEMETRY'])"
    )
    assert out.split() == ["1", "false", "False"]


def test_no_code_names_a_model_hub_id():
    import re

    hub = re.compile(r"(SentenceTransformer|from_pretrained|hf_hub_download|snapshot_download)\(\s*['\"][\w.-]+/")
    for package in ("rag", "ingest", "ui"):
        for path in (REPO / package).rglob("*.py"):
            assert not hub.search(path.read_text(encoding="utf-8")), path
