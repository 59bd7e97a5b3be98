#!/usr/bin/env bash
# Build llama.cpp's own server (llama-server) into $VENV/llama.cpp/bin/ from the llama.cpp
# source that the installed llama-cpp-python release vendors (its sdist on PyPI), so both run
# the same llama.cpp. The embedded LLM uses it when present: it serves several conversations
# at once (parallel slots, batched decoding), where llama-cpp-python's server serves one.
# Idempotent (a stamp holds the llama-cpp-python version); about 4 minutes on 2 cores.
# CMAKE_ARGS, as for llama-cpp-python, adds or overrides options (-DGGML_CUDA=on for a GPU).
# On failure it warns and exits 0: the embedded LLM then runs on llama-cpp-python's server.
# Usage: scripts/build_llama_server.sh   (from scripts/setup.sh, after the install)
#        VENV=/opt/venv scripts/build_llama_server.sh   (another virtual environment: the Dockerfile)
set -euo pipefail
cd "$(dirname "$0")/.."

venv=${VENV:-.venv}
python="$venv/bin/python"
dest="$venv/llama.cpp"
version="$("$python" -c 'import llama_cpp; print(llama_cpp.__version__)')"
[ -x "$dest/bin/llama-server" ] && [ "$(cat "$dest/.version" 2>/dev/null)" = "$version" ] && exit 0

fail() {
  echo "warning: llama-server was not built ($1); the embedded LLM falls back to" \
    "llama-cpp-python's server, which answers one conversation at a time" >&2
  exit 0
}
export PATH="$(cd "$venv/bin" && pwd):$PATH"
command -v cmake >/dev/null 2>&1 || "$python" -m pip install --quiet cmake || fail "no cmake"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
"$python" -m pip download --quiet --no-deps --no-binary :all: --dest "$work" \
  "llama-cpp-python==$version" 2>"$work/pip.log" \
  || { tail -5 "$work/pip.log" >&2; fail "the llama-cpp-python $version source could not be fetched"; }
tar -xzf "$work"/llama_cpp_python-*.tar.gz -C "$work" || fail "the source archive did not unpack"
src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
[ -f "$src/tools/server/server.cpp" ] || fail "the source has no tools/server"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
echo "setup: building llama-server (llama.cpp of llama-cpp-python $version)" >&2
cmake -S "$src" -B "$work/build" "${generator[@]}" -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON ${CMAKE_ARGS:-} \
  >"$work/cmake.log" 2>&1 || { tail -20 "$work/cmake.log" >&2; fail "cmake failed"; }
cmake --build "$work/build" --target llama-server -j "$(nproc 2>/dev/null || echo 2)" \
  >"$work/build.log" 2>&1 || { tail -20 "$work/build.log" >&2; fail "the build failed"; }
mkdir -p "$dest/bin"
install -m 755 "$work/build/bin/llama-server" "$dest/bin/llama-server.new"
"$dest/bin/llama-server.new" --version >/dev/null 2>&1 || fail "the built binary does not run"
mv "$dest/bin/llama-server.new" "$dest/bin/llama-server"
echo "$version" > "$dest/.version"
