#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the unit tests and the tests that load BPF into
# this kernel (they need root), again under ASan+UBSan and TSan, and every fuzzer for a bounded time
# (FUZZ_SECONDS per target, default 45; SKIP_HARDENING=1 skips sanitizers and fuzzers for a quick run).
# This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bash scripts/kernel-setup.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "test: the kernel tests load BPF programs and need root: run sudo bash scripts/test.sh" >&2
  exit 1
fi
if [ "${SKIP_HARDENING:-0}" != 1 ]; then
  bash scripts/sanitize.sh
  bash scripts/fuzz.sh "${FUZZ_SECONDS:-45}"
fi
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j 1
