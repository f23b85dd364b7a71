#!/usr/bin/env bash
# Builds and runs the tests under sanitizers (clang):
#   build-asan/  AddressSanitizer + UndefinedBehaviorSanitizer (leaks included; scripts/asan-build.sh, the
#                build fuzz.sh uses too): every unit test, and as root (they load BPF) the kernel tests and
#                the end-to-end tests with the ASan perfstream binary, except the long ones (suites named
#                Long*, minutes of wall time each: they run once, in the plain build's ctest);
#   build-tsan/  ThreadSanitizer: the unit tests (BatchingConsumer, TraceFileWriter, Spool, StreamClient and
#                SinkServer over loopback, the drains), and as root the kernel tests: the reader threads
#                draining real rings (two readers, hotplug, stop under signals).
# Any report fails the run (halt_on_error). Usage: scripts/sanitize.sh [asan|tsan]... (default: both).
set -euo pipefail
cd "$(dirname "$0")/.."
export CC=${CC:-clang} CXX=${CXX:-clang++}
jobs=$(nproc)
suites=("$@")
[ ${#suites[@]} -gt 0 ] || suites=(asan tsan)

export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
export TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1

for suite in "${suites[@]}"; do
  case "$suite" in
    asan)
      echo "sanitize: ASan+UBSan build (build-asan/)" >&2
      bash scripts/asan-build.sh perfstream_unit_tests perfstream_kernel_tests perfstream_e2e_tests perfstream  # shared with fuzz.sh
      echo "sanitize: ASan+UBSan unit tests" >&2
      for unit in build-asan/tests/perfstream_unit_*_tests; do "$unit" --gtest_brief=1; done
      if [ "$(id -u)" -eq 0 ]; then
        bash scripts/kernel-setup.sh
        echo "sanitize: ASan+UBSan kernel tests" >&2
        build-asan/tests/perfstream_kernel_tests --gtest_brief=1
        echo "sanitize: ASan+UBSan end-to-end tests (the ASan perfstream binary)" >&2
        build-asan/tests/perfstream_e2e_tests --gtest_brief=1 --gtest_filter='-Long*'
      else
        echo "sanitize: not root: the kernel tests are skipped under ASan" >&2
      fi
      ;;
    tsan)
      echo "sanitize: TSan build (build-tsan/)" >&2
      flags="-O1 -gline-tables-only -DNDEBUG"  # as in asan-build.sh
      cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPERFSTREAM_SANITIZE=thread \
        -DCMAKE_C_FLAGS_RELWITHDEBINFO="$flags" -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="$flags" -DPERFSTREAM_BUILD_BENCH=OFF >/dev/null
      cmake --build build-tsan -j "$jobs" --target perfstream_unit_tests perfstream_kernel_tests
      echo "sanitize: TSan unit tests" >&2
      # Not the mock-cluster tests (perfstream_unit_kafka_tests): librdkafka (Debian's, not built with TSan) starts its threads with C11
      # thrd_create, which TSan does not intercept, so TSan has no state for them and crashes on their
      # first intercepted call. Those tests run under ASan+UBSan above and in the plain ctest.
      for unit in build-tsan/tests/perfstream_unit_*_tests; do
        [ "$unit" = build-tsan/tests/perfstream_unit_kafka_tests ] || "$unit" --gtest_brief=1
      done
      if [ "$(id -u)" -eq 0 ]; then
        bash scripts/kernel-setup.sh
        echo "sanitize: TSan kernel tests (reader threads on real rings)" >&2
        build-tsan/tests/perfstream_kernel_tests --gtest_brief=1
      else
        echo "sanitize: not root: the kernel tests are skipped under TSan" >&2
      fi
      ;;
    *)
      echo "sanitize: unknown suite '$suite' (asan or tsan)" >&2
      exit 2
      ;;
  esac
done
echo "sanitize: no sanitizer reports" >&2
