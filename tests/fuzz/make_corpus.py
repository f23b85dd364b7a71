#!/usr/bin/env python3
"""Writes the seed corpora of tests/fuzz/corpus/<target>/ (see docs/FUZZING.md).

Usage: tests/fuzz/make_corpus.py TRACE_FILE...
The trace files are short real recordings (perfstream record --probe exec --duration 1s -o FILE), used as
trace_reader seeds and cut into stream frames. Every other seed is built here, byte for byte in the layouts
the harnesses read (their top comments), and the perf records like tests/testing/fake_ring.hpp builds them.
"""
import os
import struct
import subprocess
import sys
import zlib

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
PERF_RECORD_LOST, PERF_RECORD_SAMPLE, PERF_RECORD_LOST_SAMPLES = 2, 9, 13
SAMPLE_TIME_CPU_RAW = (1 << 2) | (1 << 7) | (1 << 10)


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    assert len(data) < 20 * 1024, (target, name, len(data))
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


def sample(time, cpu, payload):
    raw = ((len(payload) + 4 + 7) & ~7) - 4
    size = 8 + 8 + 8 + 4 + raw
    return (struct.pack("<IHH", PERF_RECORD_SAMPLE, 0, size) + struct.pack("<QII", time, cpu, 0) +
            struct.pack("<I", raw) + payload.ljust(raw, b"\0"))


def lost(ident, count, time, cpu):
    return struct.pack("<IHH", PERF_RECORD_LOST, 0, 40) + struct.pack("<QQQII", ident, count, time, cpu, 0)


def ring(log2_size, tail, records, flags=1, sample_type=SAMPLE_TIME_CPU_RAW, steps=None):
    """u8 log2(size)-3 | u64 tail | 4 x u16 head steps (in 8-byte units: flag bit 0) | u8 flags | u64 sample_type
    | data area, the records written from tail, wrapping."""
    size = 1 << log2_size
    area = bytearray(size)
    pos = tail
    for r in records:
        for b in r:
            area[pos & (size - 1)] = b
            pos += 1
    total = pos - tail
    if steps is None:
        steps = [total // 8, 0, 0, 0]
    head = struct.pack("<B", log2_size - 3) + struct.pack("<Q", tail) + struct.pack("<4H", *steps)
    return head + struct.pack("<BQ", flags, sample_type) + bytes(area)


def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def field(num, wire, value):
    if wire == 0:
        return varint(num << 3) + varint(value)
    return varint(num << 3 | 2) + varint(len(value)) + value


def frame(ftype, encoding, payload):
    head = b"PSFR" + struct.pack("<BBHI", ftype, encoding, 0, len(payload))
    return head + struct.pack("<I", zlib.crc32(head) & 0xFFFFFFFF) + payload


def frames_of(trace):
    off, out = 16, []
    while off + 16 <= len(trace):
        (length,) = struct.unpack_from("<I", trace, off + 8)
        out.append(trace[off:off + 16 + length])
        off += 16 + length
    return out


def main(traces):
    # ring_decoder: samples, a loss notice, a record that wraps, garbage, a tail far behind head.
    recs = [sample(1000 + i, i % 2, bytes(range(i * 3))) for i in range(6)] + [lost(7, 3, 2000, 1)]
    write("ring_decoder", "samples", ring(9, 0, recs))
    write("ring_decoder", "wrapping", ring(8, 256 - 16, [sample(5, 0, b"x" * 40), lost(1, 1, 6, 0)]))
    write("ring_decoder", "steps", ring(10, 64, recs, steps=[4, 5, 3, 40]))
    write("ring_decoder", "corrupt_size", ring(7, 0, [struct.pack("<IHH", 9, 0, 13) + b"\0" * 8], steps=[2, 0, 0, 0]))
    write("ring_decoder", "sample_id_all", ring(9, 8, recs, flags=5, sample_type=(1 << 0) | (1 << 1) | SAMPLE_TIME_CPU_RAW | (1 << 6)))

    # trace_reader and stream_frame: the recordings.
    hello = field(1, 0, 1) + field(2, 2, b"fuzz-collector") + field(3, 2, field(2, 2, b"0.1.0") + field(3, 2, b"vm"))
    for i, path in enumerate(traces):
        data = open(path, "rb").read()
        write("trace_reader", "trace%d" % i, b"\0" + data)
        write("trace_reader", "trace%d_fixcrc" % i, b"\1" + data)
        write("trace_reader", "trace%d_cut" % i, b"\0" + data[:len(data) * 2 // 3])
        body = b"".join(f for f in frames_of(data)[1:])  # a stream sends batches and the trailer, not the header
        write("stream_frame", "session%d" % i, b"\0" + frame(16, 0, hello) + body)
        batches = [f for f in frames_of(data) if f[4] == 2]
        if batches:
            message = subprocess.run(["zstd", "-d", "-c"], input=batches[0][16:], stdout=subprocess.PIPE,
                                     check=True).stdout  # the decompressed batch, for mode 2
            write("stream_frame", "batch%d" % i, b"\2" + message)
    write("stream_frame", "control", b"\0" + frame(16, 0, hello) + frame(17, 0, field(1, 0, 1) + field(2, 0, 5)) +
          frame(18, 0, field(1, 0, 9) + field(2, 0, 1)) + frame(19, 0, field(1, 2, b"protocol version 2")))
    write("stream_frame", "hello_message", b"\3" + hello)

    # columnar_batch: a Batch message with time delta planes (mode 0: deltas 0, +70000, -5 as three planes,
    # raw payloads), and records the harness encodes with time steps of every width and sign (mode 5: records,
    # each an i64 step, a u8 shift, a u8 kind and a u8 length, then the payload bytes).
    planes = bytes([0x00, 0xE0, 0x09, 0x00, 0x22, 0x00, 0x00, 0x02, 0x00])
    write("columnar_batch", "planes_raw", b"\0" + field(1, 0, 1) + field(2, 0, 1000) + field(3, 0, 3) +
          field(5, 2, bytes([0, 1, 0])) + field(6, 2, bytes([4, 4, 4])) + field(7, 2, b"abcdefghijkl") +
          field(12, 2, planes))
    steps = b""
    for i, (step, shift) in enumerate([(1, 0), (-(1 << 62), 40), (1 << 62, 0), (-(1 << 63), 0), (12345, 0),
                                       (-1, 0), ((1 << 63) - 1, 8)]):
        payload = struct.pack("<I", i % 3) + bytes(range(i * 5))
        steps += struct.pack("<qBBB", step, shift, i % 3, len(payload)) + payload
    write("columnar_batch", "wide_time_steps", bytes([5, 0, 7]) + steps)

    # payload_decoder: u8 schema count | per schema u32 kind, u8 fields, per field u8 type, u32 offset,
    # u32 size, u8 length field | payload.
    def schema(kind, fields):
        out = struct.pack("<IB", kind, len(fields))
        for t, off, size, lf in fields:
            out += struct.pack("<BIIB", t, off, size, lf)
        return out
    exec_like = schema(0, [(2, 0, 4, 0xFF), (1, 4, 4, 0xFF), (3, 8, 16, 0xFF), (2, 24, 2, 0xFF), (3, 26, 64, 3)])
    payload = struct.pack("<Ii", 4242, -7) + b"bash".ljust(16, b"\0") + struct.pack("<H", 10) + b"/bin/true\0"
    write("payload_decoder", "untagged", b"\0" + exec_like + payload)
    tagged = schema(1, [(2, 0, 4, 0xFF), (4, 4, 8, 0xFF)]) + schema(2, [(2, 0, 4, 0xFF), (1, 4, 8, 0xFF)])
    write("payload_decoder", "tagged", b"\1" + tagged + struct.pack("<I", 2) + struct.pack("<q", -1))

    # cli_parsers: the text of flags and URLs.
    for i, text in enumerate([b"tcp://127.0.0.1:9000", b"tcp://[::1]:443", b"unix:/run/perfstream.sock",
                              b"0-3,5,8-9\n", b"total:64M", b"256K", b"500ms", b"4096",
                              b"--probe\0exec\0-o\0out.data\0-v\0--duration=2s\0--\0sleep\0001",
                              b"-Cs0-1\0-ofile\0--cpus=0\0pos"]):
        write("cli_parsers", "seed%d" % i, text)


if __name__ == "__main__":
    main(sys.argv[1:])
