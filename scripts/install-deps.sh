#!/usr/bin/env bash
# Installs, from Debian 12's packages, everything perfstream needs to build, test and run.
# Idempotent: packages already present are left alone, and apt is only asked when one is missing.
set -euo pipefail

packages=(
  build-essential cmake pkg-config git
  clang llvm                        # clang -target bpf; llvm-strip for the BPF objects
  libbpf-dev bpftool libelf-dev zlib1g-dev
  libboost-dev libboost-system-dev  # Boost.Asio
  libzstd-dev zstd
  libprotobuf-dev protobuf-compiler
  libssl-dev openssl                # openssl: the mTLS test makes its certificates
  librdkafka-dev                    # stream --to kafka://, sink --from kafka:// (and the mock cluster the tests use)
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 procps util-linux kmod
  python3-protobuf python3-zstandard python3-numpy python3-pandas  # the Python package (python/perfstream) and its tests
  e2fsprogs                         # mkfs.ext4: the test of a file system turning read-only
  linux-perf                        # perf: the workload and the baseline of scripts/read-bench.sh
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run this script as root (sudo $0)" >&2
    exit 1
  fi
  echo "install-deps: installing ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
