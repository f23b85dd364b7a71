#!/usr/bin/env bash
# Installs what is missing, builds, and runs every test: the synthetic unit tests and the tests that load
# BPF into this kernel (they need root). This is what CI runs (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bash scripts/kernel-setup.sh
if [ "$(id -u)" -ne 0 ]; then
  echo "test: the kernel tests load BPF programs and need root: run sudo bash scripts/test.sh" >&2
  exit 1
fi
cd "${BUILD_DIR:-build}"
ctest --output-on-failure --timeout 600 -j 1
