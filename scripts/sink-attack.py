#!/usr/bin/env python3
"""Cheap attacks on a running `perfstream sink`, with its RSS, open fds and log size measured (issue 16).

    perfstream sink --listen tcp://127.0.0.1:7411 -d /tmp/sink 2> /tmp/sink.log &
    scripts/sink-attack.py --port 7411 --pid $! --log /tmp/sink.log

Attacks, one after the other, each from fresh connections (all from 127.0.0.1, so give the sink
--max-connections-per-peer 1000 to measure the memory attacks past the per-peer limit):
  prehello  N peers each send one frame header declaring a 16 MiB hello, and nothing else
  stall     N peers say hello, declare a 16 MiB batch, send 1 MiB of it and stall
  flood     N connections opened at once and held (past --max-connections they are closed at once)
  ids       N hellos, one after the other, each with a new collector id, from --sources addresses
            127.2.x.y (1: all from one address, as a crashing fleet behind one host, or an attacker); each
            connection says hello, reads the answer (welcome or refusal) and closes
For each: the sink's VmRSS before and at its highest, its open fds, and the log bytes the attack added.

With --honest, after the attacks an honest `perfstream stream` (that command line, run as given, e.g.
"build/collector/perfstream stream --to tcp://127.0.0.1:7411 --probe loadgen -d 3s ...") streams to the
sink; the script then compares the records it says it sent with what `perfstream stats --json` finds in
the sink's file for it (--dir: the sink's directory).
"""
import argparse
import os
import socket
import struct
import time
import zlib


def frame_header(ftype, encoding, length):
    head = b"PSFR" + struct.pack("<BBHI", ftype, encoding, 0, length)
    return head + struct.pack("<I", zlib.crc32(head) & 0xFFFFFFFF)


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


def hello(collector_id):
    header = b"\x08\x01" + b"\x8a\x01" + varint(len(collector_id)) + collector_id.encode()  # format 1, recording_id
    msg = b"\x08\x01" + b"\x12" + varint(len(collector_id)) + collector_id.encode()
    msg += b"\x1a" + varint(len(header)) + header
    return frame_header(16, 0, len(msg)) + msg


def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def log_size(path):
    return os.path.getsize(path) if path else 0


def measure(args, name, attack):
    rss0, log0 = status(args.pid, "VmRSS"), log_size(args.log)
    peak = rss0
    peers = attack()
    deadline = time.time() + args.hold
    fd_peak = max(fd_peak_during_attack(args), fds(args.pid))
    while time.time() < deadline:
        peak = max(peak, status(args.pid, "VmRSS"))
        fd_peak = max(fd_peak, fds(args.pid))
        time.sleep(0.05)
    for p in peers:
        p.close()
    time.sleep(1)
    print(f"{name:9} x{args.n}: RSS {rss0 / 2**20:.1f} MiB -> peak {peak / 2**20:.1f} MiB "
          f"(after: {status(args.pid, 'VmRSS') / 2**20:.1f} MiB), fds peak {fd_peak}, "
          f"log +{log_size(args.log) - log0} bytes")


def fd_peak_during_attack(args):
    return getattr(args, "fd_peak", 0)


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setblocking(True)
    return s


def prehello(args):
    peers = []
    for _ in range(args.n):
        s = connect(args.port)
        s.sendall(frame_header(16, 0, 16 << 20))
        peers.append(s)
    return peers


def stall(args):
    peers = []
    chunk = b"z" * (1 << 20)
    for i in range(args.n):
        s = connect(args.port)
        s.sendall(hello(f"attacker-{os.getpid()}-{i}"))
        s.settimeout(5)
        s.recv(4096)  # the welcome
        s.setblocking(False)
        s.send(frame_header(2, 1, 16 << 20))
        try:
            s.send(chunk)
        except BlockingIOError:
            pass
        peers.append(s)
    return peers


def ids(args):
    peers, answers = [], {"welcome": 0, "refusal": 0, "closed": 0}
    run = f"{os.getpid()}-{int(time.time())}"
    for i in range(args.n):
        k = i % args.sources
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.bind((f"127.2.{k // 250}.{k % 250 + 1}", 0))
        s.connect(("127.0.0.1", args.port))
        s.settimeout(5)
        s.sendall(hello(f"fleet-{run}-{i}"))
        try:
            head = s.recv(16)
            answers["welcome" if head[4:5] == bytes([17]) else "refusal" if head[4:5] == bytes([19]) else "closed"] += 1
        except OSError:
            answers["closed"] += 1
        s.close()
    print(f"ids       x{args.n} from {args.sources} address(es): {answers['welcome']} welcomed, "
          f"{answers['refusal']} refused, {answers['closed']} closed without an answer")
    return peers


def flood(args):
    peers = []
    for _ in range(args.n):
        try:
            peers.append(connect(args.port))
        except OSError:
            pass
    return peers


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--pid", type=int, required=True, help="the sink's pid")
    parser.add_argument("--log", help="the file the sink's stderr goes to")
    parser.add_argument("-n", type=int, default=100, help="peers per attack (default 100)")
    parser.add_argument("--hold", type=float, default=3, help="seconds each attack is held (default 3)")
    parser.add_argument("--sources", type=int, default=1, help="ids: peer addresses to spread the hellos over")
    parser.add_argument("--honest", help="an honest `perfstream stream` command line to run after the attacks")
    parser.add_argument("--dir", help="with --honest: the sink's directory")
    parser.add_argument("attacks", nargs="*", default=["prehello", "stall", "flood"])
    args = parser.parse_args()
    for name in args.attacks:
        measure(args, name, lambda: watched(args, globals()[name]))
    if args.honest:
        honest(args)


def watched(args, attack):
    # The fds peak while the attack runs (ids: connections come and go), sampled on a thread.
    import threading
    args.fd_peak, done = 0, threading.Event()

    def sample():
        while not done.is_set():
            args.fd_peak = max(args.fd_peak, fds(args.pid))
            time.sleep(0.02)
    t = threading.Thread(target=sample)
    t.start()
    try:
        return attack(args)
    finally:
        done.set()
        t.join()


def honest(args):
    import json
    import re
    import shlex
    import subprocess
    binary = shlex.split(args.honest)[0]
    before = set(os.listdir(args.dir))
    run = subprocess.run(shlex.split(args.honest), capture_output=True, text=True)
    out = run.stdout + run.stderr
    sent = re.search(r"([0-9,]+) records", out)
    new = sorted(set(os.listdir(args.dir)) - before)
    print(f"honest    stream exit {run.returncode}; its summary: {out.strip().splitlines()[-1] if out.strip() else ''}")
    for name in new:
        stats = subprocess.run([binary, "stats", "--json", os.path.join(args.dir, name)], capture_output=True, text=True)
        try:
            records = sum(f["records"] for f in json.loads(stats.stdout)["files"])
        except (ValueError, KeyError):
            records = stats.stdout.strip() or stats.stderr.strip()
        print(f"honest    {name}: {records} records stored; the collector says it sent "
              f"{sent.group(1) if sent else '?'}")


if __name__ == "__main__":
    main()
