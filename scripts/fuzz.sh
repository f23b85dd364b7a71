#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/, clang, ASan+UBSan) into build-asan/ and runs each one for
# SECONDS (default 45, what CI runs) on a working copy of its seed corpus. Fails on any crash, sanitizer
# report, fuzz invariant, leak, hang (an input running over 10 s) or out-of-memory (2 GB); the input that
# caused it is saved in build-asan/crashes/<target>/, the full output in build-asan/logs/<target>.log.
# Prints one line per target: executions, time, exec/s, coverage (cov: edges, ft: features), working corpus
# size, inputs added by this run, peak RSS. docs/FUZZING.md, docs/HARDENING.md.
# Usage: scripts/fuzz.sh [SECONDS] [TARGET...]   (TARGET: ring_decoder trace_reader columnar_batch stream_frame
#                                                 payload_decoder cli_parsers; default all)
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-45}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(ring_decoder trace_reader columnar_batch stream_frame payload_decoder cli_parsers)
build_dir=${FUZZ_BUILD_DIR:-build-asan}

ASAN_BUILD_DIR=$build_dir bash scripts/asan-build.sh "${targets[@]/#/fuzz_}"  # the build sanitize.sh uses

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
final_stat() { sed -n "s/^stat::$1: *//p" "$log" | tail -1; }  # from libFuzzer's -print_final_stats
failed=()
for t in "${targets[@]}"; do
  corpus=$build_dir/corpus/$t
  crashes=$build_dir/crashes/$t
  log=$build_dir/logs/$t.log
  mkdir -p "$corpus" "$crashes" "$(dirname "$log")"
  # The working corpus (first directory) grows with what the run finds; the seeds stay as they are.
  # libFuzzer ends a run itself: -max_total_time, or an input that crashes, trips a sanitizer or a fuzz
  # invariant, leaks (LeakSanitizer, detect_leaks=1), runs over -timeout seconds (a hang) or over
  # -rss_limit_mb. `timeout` is only the backstop for a fuzzer that never returns at all.
  status=0
  started=$SECONDS
  timeout -k 10 $((seconds + 300)) "$build_dir/tests/fuzz/fuzz_$t" -max_total_time="$seconds" -timeout=10 \
    -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$crashes/" "$corpus" "tests/fuzz/corpus/$t" \
    >"$log" 2>&1 || status=$?
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1 || true)  # none when the seeds crash
  summary="$(final_stat number_of_executed_units) runs in $((SECONDS - started)) s ($(final_stat average_exec_per_sec)/s)"
  summary+=", ${cov:-no coverage line}, corpus $(ls "$corpus" | wc -l) files ($(( $(du -sb "$corpus" | cut -f1) / 1024 )) KB)"
  summary+=", $(final_stat new_units_added) new, peak RSS $(final_stat peak_rss_mb) MB"
  if [ "$status" -ne 0 ]; then
    failed+=("$t")
    echo "fuzz: $t FAILED (exit $status): $summary; log $log, input in $crashes/" >&2
    grep -E 'ERROR|SUMMARY|invariant|ALARM|Test unit written' "$log" | head -5 >&2 || true
  else
    echo "fuzz: $t ok: $summary" >&2
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: failures in ${failed[*]}" >&2
  exit 1
fi
