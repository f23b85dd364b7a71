#!/usr/bin/env bash
# Soak test: `perfstream record` at a steady high rate for a long time keeps flat memory, and what it wrote
# reads back complete. Not part of CI (ten minutes); docs/HARDENING.md has the latest results.
#
# It builds what it needs, then runs
#   perfstream record --probe loadgen -m RING --rotate-size ROTATE -o DIR/soak.data -- perfstream-soak-load ...
# where perfstream-soak-load (bench/soak_load.cpp) points the recorder's loadgen probe at itself and calls
# getppid() RATE times a second for the whole run: one SIZE-byte record per call. Every SAMPLE seconds it
# writes the recorder's VmRSS, VmHWM, RssAnon, threads, CPU time and bytes on disk to DIR/rss.csv. At the end:
#   - memory is flat: VmRSS at the end exceeds VmRSS after the warm-up (the first minute, or a third of a
#     shorter run) by at most RSS_GROWTH_PCT percent or RSS_GROWTH_KB, whichever is larger;
#   - every piece (soak.data, soak.data.1, ...) reads back with `perfstream stats`: no damage, a trailer,
#     as many records and batches as the trailer says; the last piece ends the recording cleanly;
#   - the records in the files add up to what the recorder's summary says it recorded, and to what loadgen
#     says it emitted (its own BPF counters); kernel losses in the files match the summary's;
#   - the pieces never took more than MAX_BYTES on disk (the recorder is stopped if they do).
# Losses and a rate below target are reported, not failed: on a busy machine they measure the machine. The
# report also gives loadgen's writes that failed for another reason than a full ring: records the kernel
# dropped because the CPU had no live ring (it came back online before the recorder reopened its ring),
# which no reader can count.
# The report is printed and kept in DIR/report.txt; the pieces are deleted unless SOAK_KEEP=1 (they are
# large), the CSV and logs are kept. Exit 0 when every check passes, 1 otherwise. Needs root (BPF).
#
# Settings (environment):
#   SOAK_MINUTES=10        how long; or SOAK_SECONDS (wins), e.g. SOAK_SECONDS=15 to check the script itself
#   SOAK_RATE=200000       getppid calls, hence records, per second
#   SOAK_RECORD_SIZE=64    bytes per record (24 to 16384)
#   SOAK_RING=4M           -m, ring per CPU
#   SOAK_ROTATE=32M        --rotate-size; `stats` holds a whole piece in memory (~120 B a record), so keep
#                          pieces small enough to read back
#   SOAK_MAX_BYTES=8G      disk budget for all pieces
#   SOAK_SAMPLE=10         seconds between samples (1 for runs under two minutes)
#   SOAK_RSS_GROWTH_PCT=10, SOAK_RSS_GROWTH_KB=4096   the flatness bound
#   SOAK_DIR=BUILD_DIR/soak  where the pieces, rss.csv, the logs and report.txt go (emptied first)
#   BUILD_DIR=build
set -euo pipefail
cd "$(dirname "$0")/.."

build_dir=${BUILD_DIR:-build}
if [ -n "${SOAK_SECONDS:-}" ]; then
  seconds=$SOAK_SECONDS
else
  seconds=$(awk -v m="${SOAK_MINUTES:-10}" 'BEGIN { printf "%d", m * 60 + 0.5 }')
fi
rate=${SOAK_RATE:-200000}
size=${SOAK_RECORD_SIZE:-64}
ring=${SOAK_RING:-4M}
rotate=${SOAK_ROTATE:-32M}
sample=${SOAK_SAMPLE:-$([ "$seconds" -lt 120 ] && echo 1 || echo 10)}
growth_pct=${SOAK_RSS_GROWTH_PCT:-10}
growth_kb=${SOAK_RSS_GROWTH_KB:-4096}
dir=${SOAK_DIR:-$build_dir/soak}
warmup=$((seconds / 3 < 60 ? seconds / 3 : 60))

to_bytes() {  # 8G, 512M, 64K, 1000 -> bytes
  awk -v v="$1" 'BEGIN { n = v + 0; u = toupper(substr(v, length(v)));
    m = (u == "K") ? 1024 : (u == "M") ? 1048576 : (u == "G") ? 1073741824 : 1; printf "%.0f", n * m }'
}
max_bytes=$(to_bytes "${SOAK_MAX_BYTES:-8G}")

if [ "$(id -u)" -ne 0 ]; then
  echo "soak: perfstream record loads BPF and needs root: sudo bash scripts/soak.sh" >&2
  exit 1
fi
if [ "$seconds" -lt 3 ]; then
  echo "soak: SOAK_SECONDS=$seconds: at least 3" >&2
  exit 2
fi

# Build: a configured tree only needs the two programs brought up to date (configure again first: a tree
# configured before bench/soak_load.cpp existed does not know its target).
if [ ! -f "$build_dir/CMakeCache.txt" ]; then
  bash scripts/build.sh
fi
cmake -S . -B "$build_dir" >/dev/null
cmake --build "$build_dir" -j "$(nproc)" --target perfstream perfstream-soak-load >/dev/null
bash scripts/kernel-setup.sh
bin=$build_dir/collector/perfstream
load=$build_dir/bench/perfstream-soak-load

mkdir -p "$dir"
rm -f "$dir"/soak.data "$dir"/soak.data.* "$dir"/rss.csv "$dir"/record.err "$dir"/load.out "$dir"/stats.* "$dir"/report.txt
trace=$dir/soak.data
# The pieces are held to SOAK_MAX_BYTES while recording (at 200,000 records/s, 10 minutes take about
# 320 MB), so that much must be free.
avail=$(df --output=avail -B1 "$dir" | tail -1)
if [ "$avail" -lt "$max_bytes" ]; then
  echo "soak: $dir has $((avail >> 20)) MiB free, less than the budget SOAK_MAX_BYTES=$((max_bytes >> 20)) MiB" >&2
  exit 1
fi

disk_bytes() {
  local f total=0
  for f in "$trace" "$trace".*; do
    if [ -f "$f" ]; then total=$((total + $(stat -c %s "$f"))); fi
  done
  echo "$total"
}
pieces() {  # soak.data, soak.data.1, soak.data.2, ... in piece order
  [ -e "$trace" ] && echo "$trace"
  ls "$trace".* 2>/dev/null | sed 's/.*\.\([0-9]*\)$/\1 &/' | sort -n | cut -d' ' -f2-
}
status_kb() { awk -v k="$1:" '$1 == k { print $2 }' "/proc/$2/status" 2>/dev/null; }

command=("$bin" record --probe loadgen -m "$ring" --rotate-size "$rotate" -o "$trace"
         -- "$load" --rate "$rate" --seconds "$seconds" --size "$size")
echo "soak: ${seconds}s at $rate records/s of $size B: ${command[*]}" >&2
"${command[@]}" >"$dir/load.out" 2>"$dir/record.err" &
recorder=$!
# Stopping early (Ctrl-C, a failed check below): end the load (the recorder's child), then the recorder.
cleanup() {
  if kill -0 "$recorder" 2>/dev/null; then
    pkill -TERM -P "$recorder" 2>/dev/null || true
    kill -INT "$recorder" 2>/dev/null || true
    wait "$recorder" 2>/dev/null || true
  fi
}
trap cleanup EXIT

clk_tck=$(getconf CLK_TCK)
echo "t_s,vmrss_kb,vmhwm_kb,rss_anon_kb,threads,cpu_s,disk_bytes" >"$dir/rss.csv"
start=$(date +%s)
next=$start
over_budget=0
while kill -0 "$recorder" 2>/dev/null; do
  now=$(date +%s)
  if [ "$now" -ge "$next" ]; then
    rss=$(status_kb VmRSS "$recorder")
    [ -n "$rss" ] || break
    ticks=$(awk '{ print $14 + $15 }' "/proc/$recorder/stat" 2>/dev/null || echo 0)
    used=$(disk_bytes)
    echo "$((now - start)),$rss,$(status_kb VmHWM "$recorder"),$(status_kb RssAnon "$recorder"),$(status_kb Threads "$recorder"),$(awk -v t="$ticks" -v h="$clk_tck" 'BEGIN { printf "%.2f", t / h }'),$used" >>"$dir/rss.csv"
    if [ "$used" -gt "$max_bytes" ] && [ "$over_budget" -eq 0 ]; then
      echo "soak: the pieces take $used bytes, over SOAK_MAX_BYTES; stopping" >&2
      over_budget=1
      pkill -TERM -P "$recorder" 2>/dev/null || true
    fi
    next=$((next + sample))
  fi
  sleep 1
done
record_status=0
wait "$recorder" || record_status=$?
trap - EXIT

# --- Checks
failures=()
fail() { failures+=("$1"); }
field() { sed -n "s/.*[ ,{]\"\\?$1\"\\?[=:]\\([0-9.]*\\).*/\\1/p" | head -1; }  # key=N or "key":N (one such key on the line)

[ "$record_status" -eq 0 ] || fail "perfstream record exited with status $record_status (see $dir/record.err)"
[ "$over_budget" -eq 0 ] || fail "the pieces went over the disk budget of $max_bytes bytes"
load_line=$(grep '^soak-load:' "$dir/load.out" || true)
[ -n "$load_line" ] || fail "perfstream-soak-load printed no result (see $dir/record.err)"
calls=$(field calls <<<"$load_line"); emitted=$(field emitted <<<"$load_line")
failed=$(field failed <<<"$load_line"); nospace=$(field nospace <<<"$load_line"); achieved=$(field rate <<<"$load_line")
skipped=$(field skipped <<<"$load_line"); misses=$(field misses <<<"$load_line")
summary=$(grep -E 'after [0-9.]+ s: [0-9]+ records' "$dir/record.err" | tail -1 || true)
[ -n "$summary" ] || fail "perfstream record printed no summary (see $dir/record.err)"
summary_records=$(sed -n 's/.* s: \([0-9]*\) records.*/\1/p' <<<"$summary")
summary_lost=$(sed -n 's/.*lost \([0-9]*\) in the kernel and \([0-9]*\) in perfstream.*/\1 \2/p' <<<"$summary")
summary_lost_kernel=${summary_lost% *}
summary_lost_perfstream=${summary_lost#* }

# Every piece on its own: stats reads it whole, so a damaged or short piece shows here.
files_records=0; files_lost_kernel=0; files_lost_collector=0; files_bytes=0; payload_bytes=0; n=0
mapfile -t piece_list < <(pieces)
[ ${#piece_list[@]} -gt 0 ] || fail "no trace file was written"
for p in "${piece_list[@]}"; do
  n=$((n + 1))
  out=$dir/stats.$(basename "$p").json
  if ! "$bin" stats --json "$p" >"$out" 2>"$out.err"; then
    fail "perfstream stats $p failed: $(head -2 "$out.err" | tr '\n' ' ')"
    continue
  fi
  file=$(grep -o '"files":\[{[^]]*}\]' "$out")
  records=$(sed 's/"trailer".*//' <<<"$file" | field records)
  batches=$(sed 's/"trailer".*//' <<<"$file" | field batches)
  trailer=$(grep -o '"trailer":{[^}]*}' <<<"$file" || true)
  if [ -z "$trailer" ]; then
    fail "$p has no trailer"
  elif [ "$(field records <<<"$trailer")" != "$records" ] || [ "$(field batches <<<"$trailer")" != "$batches" ]; then
    fail "$p holds $records records in $batches batches; its trailer says $(field records <<<"$trailer") in $(field batches <<<"$trailer")"
  fi
  grep -q '"damage":\[\]' "$out" || fail "$p is damaged: $(grep -o '"damage":.*' "$out")"
  if [ "$n" -eq ${#piece_list[@]} ] && ! grep -q '"ended_cleanly":true' "$out"; then
    fail "the last piece $p does not end the recording cleanly"
  fi
  totals=$(grep -o '"totals":{[^}]*}' "$out")
  files_records=$((files_records + ${records:-0}))
  files_lost_kernel=$((files_lost_kernel + $(field lost_kernel <<<"$totals")))
  files_lost_collector=$((files_lost_collector + $(field lost_collector <<<"$totals")))
  payload_bytes=$((payload_bytes + $(field payload_bytes <<<"$totals")))
  files_bytes=$((files_bytes + $(stat -c %s "$p")))
done
if [ -n "$summary_records" ] && [ "$files_records" != "$summary_records" ]; then
  fail "the files hold $files_records records; the recorder's summary says $summary_records"
fi
if [ -n "$emitted" ] && [ "$files_records" != "$emitted" ]; then
  fail "the files hold $files_records records; loadgen emitted $emitted"
fi
if [ -n "$summary_lost_kernel" ] && [ "$files_lost_kernel" != "$summary_lost_kernel" ]; then
  fail "the files record $files_lost_kernel kernel losses; the summary says $summary_lost_kernel"
fi

# Memory: the sample after the warm-up against the last one.
base_row=$(awk -F, -v w="$warmup" 'NR > 1 && $1 >= w { print; exit }' "$dir/rss.csv")
first_row=$(awk -F, 'NR == 2' "$dir/rss.csv")
last_row=$(tail -1 "$dir/rss.csv")
rss_first=$(cut -d, -f2 <<<"$first_row"); rss_base=$(cut -d, -f2 <<<"$base_row"); t_base=$(cut -d, -f1 <<<"$base_row")
rss_end=$(cut -d, -f2 <<<"$last_row"); t_end=$(cut -d, -f1 <<<"$last_row"); hwm=$(cut -d, -f3 <<<"$last_row")
cpu_s=$(cut -d, -f6 <<<"$last_row")
if [ -z "$base_row" ] || [ "$t_end" = "$t_base" ]; then
  fail "too few RSS samples to compare (the recorder ran $t_end s; the warm-up is $warmup s)"
  growth=0; allowed=0
else
  growth=$((rss_end - rss_base))
  allowed=$((rss_base * growth_pct / 100 > growth_kb ? rss_base * growth_pct / 100 : growth_kb))
  [ "$growth" -le "$allowed" ] || fail "VmRSS grew by $growth kB from $t_base s to $t_end s (allowed $allowed kB)"
fi

{
  echo "soak report ($(date -u +%FT%TZ), $(uname -r), $(nproc) CPUs)"
  echo "  command      ${command[*]}"
  echo "  load         $calls calls in $seconds s: $achieved/s achieved of $rate/s ($skipped given up after stalls)"
  echo "               $((${calls:-0} - ${emitted:-0} - ${failed:-0})) calls loadgen did not count; the kernel skipped ${misses:-?} runs of it (recursion misses)"
  echo "  records      files $files_records, recorder summary ${summary_records:-?}, loadgen emitted ${emitted:-?}"
  echo "  loss         kernel $files_lost_kernel in the files (summary ${summary_lost_kernel:-?}, loadgen ring-full ${nospace:-?}), perfstream ${summary_lost_perfstream:-?}"
  echo "               other failed writes $((${failed:-0} - ${nospace:-0})) (no live ring on that CPU, e.g. back online before the recorder reopened it)"
  echo "  bytes        $payload_bytes payload -> $files_bytes on disk in ${#piece_list[@]} pieces of at most $rotate"
  echo "  VmRSS (kB)   first sample $rss_first, at ${t_base:-?} s $rss_base, at ${t_end:-?} s $rss_end (growth $growth, allowed $allowed); VmHWM $hwm"
  echo "  CPU          recorder ${cpu_s} s user+system"
  echo "  samples      $dir/rss.csv"
  if [ ${#failures[@]} -eq 0 ]; then
    echo "  result       PASS"
  else
    for f in "${failures[@]}"; do echo "  FAIL         $f"; done
  fi
} | tee "$dir/report.txt"

[ "${SOAK_KEEP:-0}" = 1 ] || rm -f "${piece_list[@]}"
[ ${#failures[@]} -eq 0 ]
