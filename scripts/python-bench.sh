#!/usr/bin/env bash
# Loading a sched_switch recording into pandas: the perfstream Python package against
# pandas.read_json(lines=True) on `perfstream dump --json` of the same file, in one run. No root needed.
#
# It writes a synthetic recording of RECORDS (default 6,000,000) sched_switch records with
# perfstream_make_recording (the recorder's own write path, 2 CPUs), then, each in a fresh /usr/bin/python3
# process, measures time and peak RSS (ru_maxrss of the child, from wait4):
#   package    perfstream.read(FILE)["sched_switch"]: every record, typed columns, in time order;
#   dump       perfstream dump --json FILE > FILE.jsonl (all records, the input of read_json);
#   read_json  pandas.read_json(FILE.jsonl, lines=True) on the first JSON_RECORDS lines (default 1,000,000:
#              all 6 M lines would need about 6 GB of JSON text and take minutes); its time and RSS for
#              the whole file are extrapolated linearly, and the table says so;
#   package on the same slice: perfstream.read of a recording of JSON_RECORDS records, for a like-for-like row.
# Environment: PERFSTREAM, MAKE_RECORDING (binaries; defaults in build/), RECORDS, JSON_RECORDS, TMPDIR,
# REPEAT (default 3: the median time and the largest RSS are reported).
set -euo pipefail
cd "$(dirname "$0")/.."

perfstream=${PERFSTREAM:-build/collector/perfstream}
make_recording=${MAKE_RECORDING:-build/tests/perfstream_make_recording}
records=${RECORDS:-6000000}
json_records=${JSON_RECORDS:-1000000}
repeat=${REPEAT:-3}
py=/usr/bin/python3

die() { echo "python-bench: $*" >&2; exit 1; }
[ -x "$perfstream" ] || die "no perfstream at $perfstream (bash scripts/build.sh)"
[ -x "$make_recording" ] || die "no $make_recording (bash scripts/build.sh)"
[ -f build/python/perfstream/perfstream_pb2.py ] || die "no build/python/perfstream (bash scripts/build.sh)"
$py -c 'import numpy, pandas, zstandard, google.protobuf' 2>/dev/null ||
  die "python3-numpy, -pandas, -zstandard, -protobuf missing (bash scripts/install-deps.sh)"
[ "$json_records" -le "$records" ] || json_records=$records

tmp=$(mktemp -d "${TMPDIR:-/tmp}/python-bench-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
export PYTHONPATH=$PWD/build/python

"$make_recording" -q -o "$tmp/big.data" --records "$records"
"$make_recording" -q -o "$tmp/slice.data" --records "$json_records"

# measure.py CMD...: runs CMD, prints "SECONDS MAXRSS_KIB"; a failing CMD fails the benchmark.
cat >"$tmp/measure.py" <<'PY'
import os, subprocess, sys, time
start = time.monotonic()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
if os.waitstatus_to_exitcode(status) != 0:
    sys.exit("failed: " + " ".join(sys.argv[1:]))
print("%.3f %d" % (time.monotonic() - start, usage.ru_maxrss))
PY
measure() {  # NAME RECORDS CMD...: REPEAT runs; prints "NAME RECORDS MEDIAN_S MAX_RSS_KIB"
  local name=$1 n=$2; shift 2
  for _ in $(seq "$repeat"); do $py "$tmp/measure.py" "$@"; done |
    sort -n | awk -v name="$name" -v n="$n" '{t[NR]=$1; if ($2>r) r=$2} END {print name, n, t[int((NR+1)/2)], r}'
}

load='import sys, perfstream; df = perfstream.read(sys.argv[1])["sched_switch"]; assert len(df) == int(sys.argv[2])'
json_load='import sys, pandas; df = pandas.read_json(sys.argv[1], lines=True); assert len(df) == int(sys.argv[2])'

{ "$perfstream" dump --json "$tmp/big.data" || true; } | head -n "$json_records" >"$tmp/slice.jsonl"  # dump dies of SIGPIPE
{
  measure package "$records" $py -c "$load" "$tmp/big.data" "$records"
  measure dump_json "$records" sh -c "\"$perfstream\" dump --json \"$tmp/big.data\" > \"$tmp/all.jsonl\""
  measure package_slice "$json_records" $py -c "$load" "$tmp/slice.data" "$json_records"
  measure read_json_slice "$json_records" $py -c "$json_load" "$tmp/slice.jsonl" "$json_records"
} >"$tmp/results"
rm -f "$tmp/all.jsonl"

echo "python-bench: $(stat -c %s "$tmp/big.data") bytes of recording, $records records; read_json on the first" \
     "$json_records lines ($(stat -c %s "$tmp/slice.jsonl") bytes of JSON); median of $repeat, largest RSS"
awk -v total="$records" '
  { name[NR]=$1; n[NR]=$2; t[NR]=$3; rss[NR]=$4 }
  END {
    printf "%-28s %10s %9s %11s %12s\n", "what", "records", "seconds", "M rec/s", "peak RSS MiB"
    for (i = 1; i <= NR; i++) printf "%-28s %10d %9.2f %11.2f %12.0f\n", name[i], n[i], t[i], n[i]/t[i]/1e6, rss[i]/1024
    for (i = 1; i <= NR; i++) idx[name[i]] = i
    j = idx["read_json_slice"]; f = total / n[j]
    printf "%-28s %10d %9.1f %11s %12.0f  (extrapolated x%.1f from the slice, not measured)\n", "read_json, whole (est.)", total, t[j]*f, "-", rss[j]*f/1024, f
    printf "package: %.1fx faster than dump --json + read_json on the whole recording (%.1f s vs %.1f s)\n", (t[j]*f + t[idx["dump_json"]])/t[idx["package"]], t[idx["package"]], t[j]*f + t[idx["dump_json"]]
    printf "on the same %d records: package %.2f s, read_json %.2f s (%.1fx)\n", n[j], t[idx["package_slice"]], t[j], t[j]/t[idx["package_slice"]]
  }' "$tmp/results"
