#!/usr/bin/env bash
# The main job on a fresh machine: installs what is missing, builds, records a few seconds of the exec and
# openat probes while some commands run, then shows the trace (dump) and its statistics (stats).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/build.sh
bash scripts/kernel-setup.sh
bin=${BUILD_DIR:-build}/collector/perfstream
trace=${TRACE:-/tmp/perfstream-demo.data}
"$bin" record --probe exec,openat --duration "${DURATION:-3s}" -o "$trace" &
recorder=$!
sleep 1
for i in 1 2 3; do ls /usr/bin >/dev/null; cat /etc/os-release >/dev/null; done
wait "$recorder"
echo "--- perfstream dump $trace (first 20 records)"
"$bin" dump "$trace" > "$trace.txt"
head -n 20 "$trace.txt"
echo "--- perfstream stats $trace"
"$bin" stats "$trace"
