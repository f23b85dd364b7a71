#!/usr/bin/env bash
# Configures build-asan/ (or $ASAN_BUILD_DIR): clang, ASan+UBSan, and every library compiled for libFuzzer's
# coverage (PERFSTREAM_FUZZ), then builds the targets given. One build serves scripts/sanitize.sh (the unit
# and kernel tests under ASan+UBSan) and scripts/fuzz.sh (the libFuzzer targets): the libraries are
# compiled with the sanitizers once, not twice, which keeps CI minutes down.
# Usage: scripts/asan-build.sh TARGET...
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${ASAN_BUILD_DIR:-build-asan}
# -O1 and line tables only, as the sanitizers' docs suggest: stack traces keep file:line, and the build
# takes minutes less than -O2 -g.
flags="-O1 -gline-tables-only -DNDEBUG"
CC=clang CXX=clang++ cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPERFSTREAM_SANITIZE=address,undefined \
  -DCMAKE_C_FLAGS_RELWITHDEBINFO="$flags" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$flags" \
  -DPERFSTREAM_FUZZ=ON -DPERFSTREAM_BUILD_BENCH=OFF >/dev/null
cmake --build "$dir" -j "$(nproc)" --target "$@"
