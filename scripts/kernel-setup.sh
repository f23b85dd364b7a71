#!/usr/bin/env bash
# Makes the kernel interfaces perfstream uses reachable: tracefs (tp/ programs look up tracepoint ids
# there) and bpffs. Safe to run again; needs root to mount.
set -euo pipefail
if [ ! -d /sys/kernel/tracing/events ] && [ ! -d /sys/kernel/debug/tracing/events ]; then
  mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null || echo "kernel-setup: cannot mount tracefs (not root?)" >&2
fi
if ! mountpoint -q /sys/fs/bpf; then
  mount -t bpf bpf /sys/fs/bpf 2>/dev/null || echo "kernel-setup: cannot mount bpffs (not root?)" >&2
fi
