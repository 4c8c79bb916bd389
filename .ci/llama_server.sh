#!/usr/bin/env bash
# Build llama.cpp's own llama-server from the llama.cpp that the installed
# llama-cpp-python vendors (its sdist), once per version, and print the
# binary's path on stdout. A second run finds the cached binary and is instant.
#
#   bash .ci/llama_server.sh            # uses the python on PATH (the venv's)
#
# Cache: ${XDG_CACHE_HOME:-~/.cache}/gemma-chat/llama-server/<version>/llama-server
# Only the llama-server target is built (Release, static, no curl), with -j2:
# a few minutes on 2 cores the first time.
set -euo pipefail

python="${PYTHON:-python3}"
version="$("$python" -c 'import importlib.metadata as m; print(m.version("llama_cpp_python"))')"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/gemma-chat/llama-server/$version"
binary="$cache/llama-server"

log() { echo "llama_server.sh: $*" >&2; }

if [ -x "$binary" ] && "$binary" --version >/dev/null 2>&1; then
    echo "$binary"
    exit 0
fi

# cmake and ninja from PyPI when the machine has none.
if ! command -v cmake >/dev/null 2>&1 || ! command -v ninja >/dev/null 2>&1; then
    log "installing cmake and ninja from PyPI"
    "$python" -m pip install -q cmake ninja >&2
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

log "fetching the llama-cpp-python $version sdist"
"$python" -m pip download -q "llama-cpp-python==$version" --no-binary :all: --no-deps \
    -d "$work/sdist" >&2
tar -xzf "$work"/sdist/llama_cpp_python-*.tar.gz -C "$work"
src="$(echo "$work"/llama_cpp_python-*/vendor/llama.cpp)"
[ -f "$src/CMakeLists.txt" ] || { log "no vendored llama.cpp in the sdist"; exit 1; }

log "building llama-server from $src (Release, -j2)"
generator=()
command -v ninja >/dev/null 2>&1 && generator=(-G Ninja)
cmake -S "$src" -B "$work/build" "${generator[@]}" \
    -DCMAKE_BUILD_TYPE=Release \
    -DBUILD_SHARED_LIBS=OFF \
    -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TOOLS=ON \
    -DLLAMA_BUILD_TESTS=OFF \
    -DLLAMA_BUILD_EXAMPLES=OFF \
    -DLLAMA_CURL=OFF >&2
cmake --build "$work/build" --target llama-server -j2 >&2

built="$(find "$work/build" -type f -name llama-server -perm -u+x | head -n 1)"
[ -n "$built" ] || { log "the build left no llama-server binary"; exit 1; }
mkdir -p "$cache"
cp "$built" "$binary.tmp.$$"
mv -f "$binary.tmp.$$" "$binary"
"$binary" --version >/dev/null 2>&1 || { log "$binary does not run"; exit 1; }
log "built $binary"
echo "$binary"
