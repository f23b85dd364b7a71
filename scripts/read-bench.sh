#!/usr/bin/env bash
# Measures perfstream's read side against perf's on the same sched_switch workload, through the command line
# only, so it measures any build of perfstream. Run as root; takes a few minutes.
#
# It records a pipe ping-pong (`perf bench sched pipe -l LOOPS`, two processes passing a byte back and forth)
# with `perfstream record --probe sched_switch` and, inside that, with `perf record -e sched:sched_switch -a`:
# one workload seen by both recorders at once. Then it records twice the loops with perfstream alone. For each
# perfstream recording (1x, 2x) it times `dump FILE | head -1` (to the first line), `dump FILE > /dev/null`,
# `dump --json FILE > /dev/null` and `stats FILE > /dev/null`, and for the perf recording
# `perf script -i FILE` (to the first line, and > /dev/null). Each read runs REPEAT times: the table gives the
# median time, records/s from it, and the peak RSS of the reading process (ru_maxrss from wait4). Then the
# ratios: perfstream's records/s over perf script's, and the RSS of 2x over 1x (about 1.0 for a reader in
# bounded memory).
#
# Environment: PERFSTREAM (the binary, default build/collector/perfstream); LOOPS (default 1250000: each loop
# is two context switches, so about 2.5 M records in the 1x recording and 5 M in the 2x, recorded at about
# 270 k switches/s on 2 cores); REPEAT (default 3); TMPDIR (where the recordings go: about 350 MB for perf's);
# SYNTHETIC=N (default 0, off) also reads synthetic recordings of N and 2N records written by MAKE_RECORDING
# (default build/tests/perfstream_make_recording), for sizes a live run would take long to record.
set -euo pipefail
cd "$(dirname "$0")/.."

perfstream=${PERFSTREAM:-build/collector/perfstream}
loops=${LOOPS:-1250000}
repeat=${REPEAT:-3}
synthetic=${SYNTHETIC:-0}
make_recording=${MAKE_RECORDING:-build/tests/perfstream_make_recording}

die() { echo "read-bench: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "recording needs root (BPF, system-wide perf): sudo $0"
[ -x "$perfstream" ] || die "no perfstream binary at $perfstream (build it: bash scripts/build.sh, or set PERFSTREAM)"
command -v perf >/dev/null || die "no perf (bash scripts/install-deps.sh installs linux-perf)"
command -v python3 >/dev/null || die "no python3 (bash scripts/install-deps.sh installs it)"
perf bench sched pipe -l 1 >/dev/null 2>&1 || die "'perf bench sched pipe' does not run here"
if [ "$synthetic" -gt 0 ] && [ ! -x "$make_recording" ]; then
  die "no $make_recording (build it: cmake --build build --target perfstream_make_recording)"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/read-bench-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# measure.py MODE CMD...: runs CMD, prints "SECONDS MAXRSS_KIB STATUS". MODE null: stdout to /dev/null, the
# time until CMD exits. MODE first: the time until CMD's first line arrives on a pipe; the pipe is then
# closed, as `| head -1` does (CMD may die of SIGPIPE), and its peak RSS is taken when it has exited. A
# signal other than that fails the measurement; an exit status is passed on (a reader that read everything
# but reports a problem with the recording, such as a record out of time order, exits 1).
cat >"$tmp/measure.py" <<'PY'
import os, subprocess, sys, time
mode, cmd = sys.argv[1], sys.argv[2:]
err = open(os.environ["MEASURE_ERR"], "ab")
start = time.monotonic()
if mode == "null":
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err)
else:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err, bufsize=0)
    got = b""
    while not got.endswith(b"\n"):
        b = p.stdout.read(1)
        if not b:
            break
        got += b
    first = time.monotonic()
    p.stdout.close()
_, status, usage = os.wait4(p.pid, 0)
end = time.monotonic()
code = os.waitstatus_to_exitcode(status)
if mode == "first":
    if not got.endswith(b"\n"):
        sys.exit("no line from " + " ".join(cmd))
    end = first  # whatever CMD did after the pipe closed (SIGPIPE, an EPIPE error) does not matter here
    code = 0
elif code < 0:
    sys.exit("%s was killed by signal %d" % (" ".join(cmd), -code))
print("%.4f %d %d" % (end - start, usage.ru_maxrss, code))
PY
export MEASURE_ERR="$tmp/reads.err"

# run_reads NAME RECORDS LABEL MODE CMD...: REPEAT runs, one result row "NAME LABEL RECORDS MEDIAN_S MAX_RSS_KIB".
run_reads() {
  local name=$1 records=$2 label=$3 mode=$4; shift 4
  local times=() rss=0 out t r code median
  for i in $(seq "$repeat"); do
    : >"$MEASURE_ERR"
    out=$(python3 "$tmp/measure.py" "$mode" "$@") || { cat "$MEASURE_ERR" >&2; die "$label on $name failed"; }
    read -r t r code <<<"$out"
    if [ "$code" -ne 0 ] && [ "$i" -eq 1 ]; then
      echo "$label on $name exited with $code: $(tail -n 2 "$MEASURE_ERR" | tr '\n' ' ')" >>"$tmp/warnings"
    fi
    times+=("$t")
    [ "$r" -gt "$rss" ] && rss=$r
  done
  median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
  echo "$name $label $records $median $rss" >>"$tmp/results"
}

# read_perfstream NAME FILE: every read of one perfstream recording, whose records stats --json counts.
sizes=()  # NAME=BYTES of every recording read
read_perfstream() {
  local name=$1 f=$2 n
  n=$("$perfstream" stats --json "$f" | python3 -c 'import json, sys; print(sum(f["records"] for f in json.load(sys.stdin)["files"]))')
  run_reads "$name" "$n" "first-line" first "$perfstream" dump "$f"
  run_reads "$name" "$n" "dump" null "$perfstream" dump "$f"
  run_reads "$name" "$n" "dump-json" null "$perfstream" dump --json "$f"
  run_reads "$name" "$n" "stats" null "$perfstream" stats "$f"
  sizes+=("$name=$(stat -c %s "$f")")
}

echo "read-bench: $("$perfstream" --version 2>/dev/null || echo "perfstream at $perfstream"), $(perf --version)," \
     "$(nproc) CPUs, kernel $(uname -r), load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "read-bench: recording perf bench sched pipe -l $loops with perfstream and perf record side by side ..."
# 4 MiB rings for both recorders (perf's -m counts pages): at 200 k+ switches/s on a busy machine the
# default 512 KiB ones lose records, and then the 2x recording is not twice the 1x.
"$perfstream" record --probe sched_switch -m 4M -o "$tmp/1x.data" -- \
  perf record -B -m 1024 -e sched:sched_switch -a -o "$tmp/1x.perf.data" -- \
  perf bench sched pipe -l "$loops" >"$tmp/record-1x.log" 2>&1 || { cat "$tmp/record-1x.log" >&2; die "recording 1x failed"; }
echo "read-bench: recording perf bench sched pipe -l $((2 * loops)) with perfstream alone ..."
"$perfstream" record --probe sched_switch -m 4M -o "$tmp/2x.data" -- \
  perf bench sched pipe -l "$((2 * loops))" >"$tmp/record-2x.log" 2>&1 || { cat "$tmp/record-2x.log" >&2; die "recording 2x failed"; }
grep -h "ops/sec\|perf record:\|perfstream record: \(the command\|CPU\)" "$tmp/record-1x.log" "$tmp/record-2x.log" |
  sed 's/^ */read-bench:   /' || true

echo "read-bench: reading, each command $repeat times ..."
: >"$tmp/results"
: >"$tmp/warnings"
read_perfstream perfstream-1x "$tmp/1x.data"
read_perfstream perfstream-2x "$tmp/2x.data"
np=$(perf report -i "$tmp/1x.perf.data" --stats 2>/dev/null | awk '$1 == "SAMPLE" && $2 == "events:" { print $3; exit }')
[ -n "$np" ] || np=$(perf script -i "$tmp/1x.perf.data" 2>/dev/null | wc -l)
n1=$(awk '$1 == "perfstream-1x" { print $3; exit }' "$tmp/results")
if [ "$((np * 10))" -lt "$((n1 * 9))" ] || [ "$((n1 * 10))" -lt "$((np * 9))" ]; then
  echo "the two recorders of one workload disagree by over 10%: perf $np records, perfstream $n1 (a CPU hotplug during the recording?)" >>"$tmp/warnings"
fi
run_reads perf-1x "$np" "first-line" first perf script -i "$tmp/1x.perf.data"
run_reads perf-1x "$np" "script" null perf script -i "$tmp/1x.perf.data"
sizes+=("perf-1x=$(stat -c %s "$tmp/1x.perf.data")")
if [ "$synthetic" -gt 0 ]; then
  echo "read-bench: synthetic recordings of $synthetic and $((2 * synthetic)) records (2 reader threads) ..."
  rm -f "$tmp/1x.perf.data"  # room on a small TMPDIR
  "$make_recording" -q --readers 2 --records "$synthetic" -o "$tmp/s1x.data"
  "$make_recording" -q --readers 2 --records "$((2 * synthetic))" -o "$tmp/s2x.data"
  read_perfstream synthetic-1x "$tmp/s1x.data"
  read_perfstream synthetic-2x "$tmp/s2x.data"
fi
echo "read-bench: load average $(cut -d' ' -f1-3 /proc/loadavg) at the end"
sed 's/^/read-bench: warning: /' "$tmp/warnings" >&2

python3 - "$tmp/results" "${sizes[@]}" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1])]
res = {(r[0], r[1]): (int(r[2]), float(r[3]), int(r[4])) for r in rows}
sizes = {a.split("=")[0]: int(a.split("=")[1]) for a in sys.argv[2:]}
print()
print("%-14s %-11s %11s %9s %9s %11s %10s %10s" % ("recording", "read", "records", "file MB", "seconds",
                                                   "records/s", "RSS MiB", "RSS B/rec"))
for (name, label), (n, s, rss) in res.items():
    rate = "-" if label == "first-line" else "%.3f M" % (n / s / 1e6)
    print("%-14s %-11s %11d %9.1f %9.3f %11s %10.1f %10.1f" % (name, label, n, sizes[name] / 1e6, s, rate,
                                                               rss / 1024, rss * 1024 / n))
def rate(name, label):
    n, s, _ = res[(name, label)]
    return n / s
p = rate("perf-1x", "script")
print()
print("records/s over perf script's (same workload, same run):")
for label in ("dump", "dump-json", "stats"):
    print("  %-10s 1x x%.2f   2x x%.2f" % (label, rate("perfstream-1x", label) / p, rate("perfstream-2x", label) / p))
for kind in ("perfstream", "synthetic"):
    if (kind + "-1x", "dump") not in res:
        continue
    one, two = res[(kind + "-1x", "dump")][0], res[(kind + "-2x", "dump")][0]
    print("peak RSS, %s 2x recording over 1x (records x%.2f):" % (kind, two / one))
    for label in ("first-line", "dump", "dump-json", "stats"):
        a, b = res[(kind + "-1x", label)], res[(kind + "-2x", label)]
        grow = (b[2] - a[2]) * 1024 / (b[0] - a[0]) if b[0] != a[0] else 0
        print("  %-10s x%.2f   (%.0f bytes per added record)" % (label, b[2] / a[2], grow))
PY
