"""Writes trace files from Python (docs/FORMAT.md), for tests that need what the collector never writes:
odd schemas, payloads that stop inside fields, invalid UTF-8, damaged frames."""
import random
import struct
import zlib

import zstandard

from perfstream import perfstream_pb2 as pb

SIGNED, UNSIGNED, STRING, BYTES = 1, 2, 3, 4


def frame(ftype, message, compress=True):
    payload = zstandard.ZstdCompressor(level=1, write_checksum=True, write_content_size=True).compress(message) \
        if compress else message
    head = b"PSFR" + bytes([ftype, 1, 0, 0]) + struct.pack("<I", len(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def file_bytes(header, batches, trailer=None, version=1):
    """batches: Batch messages, or their wire bytes (a batch with time delta planes, see with_planes)."""
    out = bytearray(b"PERFSTRM" + struct.pack("<II", version, 0))
    out += frame(1, header.SerializeToString())
    for b in batches:
        out += frame(2, b if isinstance(b, bytes) else b.SerializeToString())
    if trailer is not None:
        out += frame(3, trailer.SerializeToString())
    return bytes(out)


def batch(sequence, records, lost=(), first_time=None):
    """records: (time, cpu, payload bytes); lost: (cpu, count, time_ns, before, source)."""
    b = pb.Batch(sequence=sequence, record_count=len(records))
    if records:
        b.first_time_ns = records[0][0] if first_time is None else first_time
        prev = b.first_time_ns
        for t, cpu, payload in records:
            b.time_deltas.append(t - prev)
            prev = t
            b.cpus.append(cpu)
            b.sizes.append(len(payload))
        b.payloads = b"".join(p for _, _, p in records)
    for cpu, count, t, before, source in lost:
        b.lost.add(cpu=cpu, count=count, time_ns=t, before=before, source=source)
    return b


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7F | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def zigzag(delta):
    """A sint64's zigzag value (an unsigned 64-bit int)."""
    return ((delta << 1) ^ (delta >> 63)) & 0xFFFFFFFFFFFFFFFF


def planes(deltas, width=None):
    """The deltas as time_delta_planes (format version 3): byte k of record i's zigzag value at k*n + i, in
    `width` bytes a record, by default the fewest that hold every value (1 when all are 0)."""
    zs = [zigzag(d) for d in deltas]
    if width is None:
        width = max([1] + [(z.bit_length() + 7) // 8 for z in zs])
    return bytes(z >> (8 * k) & 0xFF for k in range(width) for z in zs)


def with_planes(b, width=None, first=False):
    """The wire bytes of Batch `b` with its time_deltas moved to field 12, time_delta_planes, written by
    hand (so that these tests also run with a perfstream_pb2 generated before version 3): appended, or put
    first."""
    rest = pb.Batch()
    rest.CopyFrom(b)
    del rest.time_deltas[:]
    field = planes_field(planes(b.time_deltas, width))
    return field + rest.SerializeToString() if first else rest.SerializeToString() + field


def planes_field(data):
    """Batch field 12 (time_delta_planes) holding `data`, with its tag (wire type 2) and length."""
    return b"\x62" + varint(len(data)) + data


def odd_header():
    """Schemas that exercise every decoding rule: duplicate kinds, sizes 3/5/0/9, length fields that are
    negative or larger than the data, strings and bytes cut by the payload's end, an unknown field type."""
    h = pb.TraceHeader(format_version=1, host="crafted", recording_id="crafted-1", start_time_ns=1000,
                       start_realtime_ns=1_700_000_000_000_000_000, clock=2)
    a = h.events.add(kind=1, name="alpha", type_name="ps_alpha")
    a.fields.add(name="kind", type=UNSIGNED, offset=0, size=4)
    a.fields.add(name="s3", type=SIGNED, offset=4, size=3)
    a.fields.add(name="u5", type=UNSIGNED, offset=7, size=5)
    a.fields.add(name="s1", type=SIGNED, offset=12, size=1)
    a.fields.add(name="s2", type=SIGNED, offset=13, size=2)
    a.fields.add(name="zero", type=SIGNED, offset=4, size=0)
    a.fields.add(name="nine", type=UNSIGNED, offset=4, size=9)
    a.fields.add(name="odd", type=0, offset=4, size=4)
    a.fields.add(name="comm", type=STRING, offset=15, size=8)
    a.fields.add(name="blob", type=BYTES, offset=23, size=6)
    a.fields.add(name="data_len", type=SIGNED, offset=29, size=2)
    a.fields.add(name="far", type=UNSIGNED, offset=4000, size=8)
    a.fields.add(name="data", type=STRING, offset=31, size=40, length_field="data_len", variable=True,
                 hint="argv")  # keeps its NULs
    b = h.events.add(kind=2, name="", type_name="ps_beta")
    b.fields.add(name="kind", type=UNSIGNED, offset=0, size=4)
    b.fields.add(name="v", type=SIGNED, offset=4, size=8)
    b.fields.add(name="bytes_len", type=UNSIGNED, offset=12, size=1)
    b.fields.add(name="bytes", type=BYTES, offset=13, size=300, length_field="bytes_len", variable=True)
    h.events.add(kind=2, name="shadowed", type_name="ps_shadowed")  # a duplicate kind: never chosen
    c = h.events.add(kind=3, name="", type_name="")  # no name at all: "unknown", with fields
    c.fields.add(name="kind", type=UNSIGNED, offset=0, size=4)
    c.fields.add(name="x", type=SIGNED, offset=4, size=4, hint="errno")  # a hint that changes nothing
    c.fields.add(name="words", type=STRING, offset=8, size=300, hint="path_argv")  # wide, keeps its NULs
    c.fields.add(name="word", type=STRING, offset=8, size=300)  # wide, up to its NUL
    return h


def random_payload(rng):
    choice = rng.random()
    if choice < 0.1:
        return bytes(rng.randrange(256) for _ in range(rng.randrange(4)))  # under 4 bytes: unknown
    kind = rng.choice([1, 1, 1, 2, 2, 3, 9])
    n = rng.randrange(4, 90) if kind != 2 else rng.randrange(4, 330)
    body = bytearray(rng.randrange(256) if rng.random() < 0.7 else rng.choice(b"abc\0\xff\xc3\xa9/")
                     for _ in range(n - 4))
    return struct.pack("<I", kind) + bytes(body)


def random_records(rng, count, cpus=3, start=10_000):
    t = start
    out = []
    for _ in range(count):
        t += rng.randrange(3)  # many ties
        out.append((t + rng.randrange(-2, 3) * rng.randrange(2), rng.randrange(cpus), random_payload(rng)))
    return out
