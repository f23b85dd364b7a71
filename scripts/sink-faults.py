#!/usr/bin/env python3
"""Two faults of issue 16, measured with the real binaries: a sink whose disk is full, and a collector killed
with kill -9 and started again on its spool. Run as root (BPF, mount):

    sudo scripts/sink-faults.py --perfstream build/collector/perfstream [--hold 15] [diskfull] [kill9]

diskfull  the sink writes to a 2 MiB tmpfs; once `perfstream stream` (openat probe, this script's opens) has
          said hello, a filler file takes the rest of it, and the script opens files for --hold seconds.
          Printed: the collector's connection attempts and the sink's refusals in that time, the log bytes
          each side wrote meanwhile, then (the filler deleted) whether every open arrived exactly once.
kill9     the sink is killed mid-stream, the collector spools, then is killed with SIGKILL; both start
          again (the collector on the same --spool). Printed: the batches the first run left, and whether
          the sink's copy of the first recording holds every one of its opens exactly once.
"""
import argparse
import collections
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Run:
    """A perfstream command in the background, its stderr in a file."""

    def __init__(self, argv, log_path):
        self.log_path = log_path
        self.log = open(log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=self.log)

    def text(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def size(self):
        return os.path.getsize(self.log_path)

    def stop(self, sig=signal.SIGINT, timeout=60):
        self.proc.send_signal(sig)
        self.proc.wait(timeout)
        self.log.close()
        return self.proc.returncode


def wait_for(what, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if what():
            return True
        time.sleep(0.05)
    return False


class Scenario:
    def __init__(self, args, name):
        self.args = args
        self.dir = tempfile.mkdtemp(prefix=f"perfstream-{name}-")
        self.files = os.path.join(self.dir, "files")
        self.sink_dir = os.path.join(self.dir, "sink")
        self.spool = os.path.join(self.dir, "spool")
        os.makedirs(self.files)
        os.makedirs(self.sink_dir)
        self.port = free_port()
        self.to = f"tcp://127.0.0.1:{self.port}"
        self.opened = []

    def sink(self, tag):
        run = Run([self.args.perfstream, "sink", "--listen", self.to, "-d", self.sink_dir, "--status-interval", "0"],
                  os.path.join(self.dir, f"sink-{tag}.log"))
        assert wait_for(lambda: "listening on" in run.text()), run.text()
        return run

    def stream(self, tag):
        run = Run([self.args.perfstream, "stream", "--to", self.to, "--probe", "openat", "-p", str(os.getpid()),
                   "--spool", self.spool, "--batch-age", "20ms", "--batch-records", "16"],
                  os.path.join(self.dir, f"stream-{tag}.log"))
        assert wait_for(lambda: "connected to" in run.text() or run.proc.poll() is not None), run.text()
        return run

    def open_files(self, n):
        for _ in range(n):
            path = os.path.join(self.files, f"f-{len(self.opened)}")
            open(path, "w").close()
            self.opened.append(path)

    def exactly_once(self, data_file):
        out = subprocess.run([self.args.perfstream, "dump", "--json", "--event", "openat", data_file],
                             capture_output=True, text=True, check=True).stdout
        seen = collections.Counter()
        for line in out.splitlines():
            path = json.loads(line).get("fields", {}).get("path", "")
            if path.startswith(self.files):
                seen[path] += 1
        missing = sum(1 for p in self.opened if seen[p] == 0)
        twice = sum(1 for p in self.opened if seen[p] > 1)
        return f"{len(self.opened)} opens: {len(self.opened) - missing - twice} exactly once, {missing} missing, {twice} more than once"

    def done(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def diskfull(args):
    s = Scenario(args, "diskfull")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", s.sink_dir], check=True)
    try:
        sink = s.sink("full")
        stream = s.stream("full")
        s.open_files(20)
        time.sleep(0.5)
        filler = os.path.join(s.sink_dir, "filler")
        fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o644)
        for block in (4096, 1):  # to the last byte
            try:
                while os.write(fd, b"x" * block) > 0:
                    pass
            except OSError:
                pass
        os.close(fd)
        sink0, stream0 = sink.size(), stream.size()
        start = time.time()
        while time.time() - start < args.hold:
            s.open_files(10)
            time.sleep(0.1)
        sink_bytes, stream_bytes = sink.size() - sink0, stream.size() - stream0
        if args.verbose:
            with open(sink.log_path, "rb") as f:
                f.seek(sink0)
                print(f.read(sink_bytes).decode(errors="replace"), end="")
        refused_lines = sum(1 for l in sink.text().splitlines() if "refused: cannot store" in l)
        os.remove(filler)
        s.open_files(10)
        stream.stop()
        sink.stop()
        summary = stream.text()
        m = re.search(r"acknowledged through batch (\d+), (\d+) connections? in (\d+) attempts?(, refused (\d+) times? "
                      r"by the sink \(last: ([^)]*)\))?", summary)
        print(f"diskfull: {args.hold:.0f} s full: the collector made {m.group(3)} connection attempts "
              f"({m.group(2)} connections), refused {m.group(5) or 0} times (last: {m.group(6)})")
        print(f"diskfull: log while full: sink +{sink_bytes} bytes ({refused_lines} refusal lines), "
              f"collector +{stream_bytes} bytes")
        data = [os.path.join(s.sink_dir, f) for f in os.listdir(s.sink_dir) if f.endswith(".data")]
        print(f"diskfull: after space is back: {s.exactly_once(data[0])}")
    finally:
        subprocess.run(["umount", "-l", s.sink_dir])
        s.done()


def kill9(args):
    s = Scenario(args, "kill9")
    try:
        sink = s.sink("1")
        first = s.stream("1")
        s.open_files(100)
        time.sleep(0.5)
        sink.stop(signal.SIGKILL)
        s.open_files(200)
        time.sleep(0.7)
        first.stop(signal.SIGKILL)
        left = [f for f in os.listdir(s.spool) if f.startswith("segment-")]
        sink = s.sink("2")
        second = s.stream("2")
        assert wait_for(lambda: "the sink has every batch of it" in second.text(), 30), second.text()
        second.stop()
        sink.stop()
        m = re.search(r"an earlier run left (\d+) batches .* of its recording (\S+) unacknowledged", second.text())
        print(f"kill9: the killed run left {m.group(1)} batches in {len(left)} spool segment(s); the next run sent them "
              f"as recording {m.group(2)}")
        undelivered = [f for f in os.listdir(s.spool) if f.startswith("undelivered-")]
        print(f"kill9: spool files left after delivery: {len(undelivered)}")
        earlier = [f for f in os.listdir(s.sink_dir) if f.endswith(".data") and m.group(2)[:20] in f]
        print(f"kill9: the first recording at the sink: {s.exactly_once(os.path.join(s.sink_dir, earlier[0]))}")
    finally:
        s.done()


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--perfstream", default="build/collector/perfstream")
    parser.add_argument("--hold", type=float, default=15, help="seconds the sink's disk stays full (default 15)")
    parser.add_argument("-v", "--verbose", action="store_true", help="print the sink's log lines while its disk is full")
    parser.add_argument("scenarios", nargs="*", default=["diskfull", "kill9"])
    args = parser.parse_args()
    args.perfstream = os.path.abspath(args.perfstream)
    for name in args.scenarios:
        globals()[name](args)


if __name__ == "__main__":
    main()
