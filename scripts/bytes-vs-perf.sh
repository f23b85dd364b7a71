#!/usr/bin/env bash
# Bytes on disk per record, perfstream against `perf record -z`, on one sched_switch storm seen by both at
# once. Run as root; takes about 10 seconds per loop count of 100000.
#
# `perfstream record --probe sched_switch` runs `perf record -z -a -e sched:sched_switch`, which runs
# `perf bench sched pipe -l LOOPS` (two processes passing a byte through pipes: two context switches per
# loop). Both recorders use zstd level 1 (perf's -z default and perfstream's) and 4 MiB rings per CPU (so
# that neither loses records). The records are counted by `perfstream stats --json` and by
# `perf report --stats`; each file's size over its records is its bytes per record, and the last line is the
# ratio of the two. perfstream's recording starts a little earlier and ends a little later than perf's (it
# records the perf process starting and exiting), so it holds a few more records.
#
# Environment: PERFSTREAM (the binary, default build/collector/perfstream); LOOPS (default 200000); TMPDIR
# (where the recordings go, removed at the end).
set -euo pipefail
cd "$(dirname "$0")/.."

perfstream=${PERFSTREAM:-build/collector/perfstream}
loops=${LOOPS:-200000}

die() { echo "bytes-vs-perf: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || die "recording needs root (BPF, system-wide perf): sudo $0"
[ -x "$perfstream" ] || die "no perfstream binary at $perfstream (build it: bash scripts/build.sh, or set PERFSTREAM)"
command -v perf >/dev/null || die "no perf (bash scripts/install-deps.sh installs linux-perf)"
perf bench sched pipe -l 1 >/dev/null 2>&1 || die "'perf bench sched pipe' does not run here"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/bytes-vs-perf-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

echo "bytes-vs-perf: $("$perfstream" --version 2>/dev/null || echo "$perfstream"), $(perf --version)," \
     "perf bench sched pipe -l $loops, load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$perfstream" record --probe sched_switch -m 4M -o "$tmp/ps.data" -- \
  perf record -z -m 1024 -e sched:sched_switch -a -o "$tmp/perf.data" -- \
  perf bench sched pipe -l "$loops" >"$tmp/record.log" 2>&1 || { cat "$tmp/record.log" >&2; die "recording failed"; }

ps_records=$("$perfstream" stats --json "$tmp/ps.data" |
  python3 -c 'import json, sys; print(sum(f["records"] for f in json.load(sys.stdin)["files"]))')
perf_records=$(perf report -i "$tmp/perf.data" --stats 2>/dev/null | awk '$1 == "SAMPLE" && $2 == "events:" { print $3; exit }')
[ -n "$perf_records" ] || die "perf report --stats gave no sample count"
ps_bytes=$(stat -c %s "$tmp/ps.data")
perf_bytes=$(stat -c %s "$tmp/perf.data")
python3 - "$ps_records" "$ps_bytes" "$perf_records" "$perf_bytes" <<'PY'
import sys
ps_n, ps_b, perf_n, perf_b = map(int, sys.argv[1:])
print("%-24s %10s %12s %10s" % ("recorder", "records", "file bytes", "B/record"))
print("%-24s %10d %12d %10.2f" % ("perfstream record", ps_n, ps_b, ps_b / ps_n))
print("%-24s %10d %12d %10.2f" % ("perf record -z", perf_n, perf_b, perf_b / perf_n))
print("perfstream / perf, bytes per record: %.2fx" % ((ps_b / ps_n) / (perf_b / perf_n)))
PY
