"""The perfstream Python package against `perfstream dump --json --raw-fields` on the same recordings: crafted ones
(every decoding rule of docs/FORMAT.md), synthetic ones (perfstream_make_recording: CPUs, reader threads,
ties, lost notices, rotation) and real ones (perfstream record, skipped only where the kernel refuses BPF),
plus damaged files: a cut short file and corrupt frames raise an exception naming the file and the offset.

Environment: PERFSTREAM_BINARY (the perfstream binary), PERFSTREAM_MAKE_RECORDING (the generator); CTest
sets both (tests/CMakeLists.txt). Run: PYTHONPATH=build/python:tests/python /usr/bin/python3 -m unittest
discover -s tests/python -v
"""
import io
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import tempfile
import time
import unittest
import zlib

import numpy as np
import pandas as pd
import zstandard

import crafted
import perfstream
from perfstream import perfstream_pb2 as pb

BINARY = os.environ.get("PERFSTREAM_BINARY", "build/collector/perfstream")
MAKE_RECORDING = os.environ.get("PERFSTREAM_MAKE_RECORDING", "build/tests/perfstream_make_recording")


def dump_json(*paths, check=True):
    # --raw-fields: the values as recorded, which the package gives (dump --json alone renders display hints).
    p = subprocess.run([BINARY, "dump", "--json", "--raw-fields", *paths], capture_output=True, text=True)
    if check and p.returncode != 0:
        raise AssertionError("dump exited %d: %s" % (p.returncode, p.stderr))
    # Split on "\n" only: valid UTF-8 such as U+0085 or U+2028 passes through raw, and str.splitlines splits there.
    return [json.loads(line) for line in p.stdout.split("\n") if line], p


def _plain(v):
    if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
        return None
    if isinstance(v, np.integer):
        return int(v)
    return v


def package_lines(rec):
    """The recording as dump --json's objects, in the package's order (the shared "seq" index)."""
    entries = []
    for name, df in rec.events.items():
        cols = [c for c in df.columns if c not in ("time_ns", "cpu", "timestamp")]
        rows = zip(df.index.tolist(), df["time_ns"].tolist(), df["cpu"].tolist(),
                   *[df[c].astype(object).tolist() for c in cols])
        for seq, t, cpu, *values in rows:
            entries.append((seq, {"time_ns": t, "cpu": cpu, "event": name,
                                  "values": {c: _plain(v) for c, v in zip(cols, values)}}))
    for seq, t, cpu, n, source in zip(rec.lost.index.tolist(), rec.lost["time_ns"].tolist(),
                                      rec.lost["cpu"].tolist(), rec.lost["lost"].tolist(),
                                      rec.lost["source"].tolist()):
        entries.append((seq, {"time_ns": t, "cpu": cpu, "lost": n, "source": source}))
    entries.sort(key=lambda e: e[0])
    assert [e[0] for e in entries] == list(range(len(entries))), "seq must number every entry once"
    return [e[1] for e in entries]


class DumpComparison(unittest.TestCase):
    def assert_same_as_dump(self, rec, lines):
        mine = package_lines(rec)
        self.assertEqual(len(mine), len(lines), "records and lost notices")
        for i, (m, d) in enumerate(zip(mine, lines)):
            if "lost" in d:
                self.assertEqual(m, d, "entry %d" % i)
                continue
            self.assertEqual((m["time_ns"], m["cpu"], m["event"]), (d["time_ns"], d["cpu"], d["event"]),
                             "entry %d" % i)
            values = m["values"]
            expected = dict(d["fields"]) if "fields" in d else {"raw": d["raw"]}
            for k, v in expected.items():
                col = "fields." + k if k in ("time_ns", "cpu", "timestamp") else k
                self.assertIn(col, values, "entry %d: field %s" % (i, k))
                self.assertEqual(values[col], v, "entry %d (%s): field %s" % (i, d["event"], k))
            # Columns of other schemas of the same event name are null in this row.
            for k, v in values.items():
                if k not in expected and not (k.startswith("fields.") and k[7:] in expected):
                    self.assertIsNone(v, "entry %d: column %s belongs to another schema" % (i, k))


@unittest.skipUnless(os.access(BINARY, os.X_OK), "no perfstream binary at " + BINARY)
class CraftedRecordings(DumpComparison):
    """Schemas and payloads the collector never writes, decoded as dump decodes them."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="perfstream-py-")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def test_every_decoding_rule_matches_dump(self):
        for seed in range(4):
            rng = random.Random(seed)
            records = crafted.random_records(rng, 3000)
            batches, at = [], 0
            for seq in range(6):
                n = rng.randrange(0, 900) if seq < 5 else len(records) - at
                part = records[at:at + n]
                at += n
                lost = [(rng.randrange(3), rng.randrange(1, 9), rng.choice([0, part[0][0] if part else 0, 10_500]),
                         rng.randrange(len(part) + 1), rng.randrange(2)) for _ in range(rng.randrange(4))]
                batches.append(crafted.batch(seq, part, lost))
            path = self.write("odd%d.data" % seed, crafted.file_bytes(crafted.odd_header(), batches,
                                                                        pb.TraceTrailer(batches=6)))
            lines, _ = dump_json(path, check=False)
            rec = perfstream.read(path)
            self.assert_same_as_dump(rec, lines)
            self.assertIn("unknown", rec.events)
            self.assertIn("ps_beta", rec.events)  # no name: the type name
            self.assertNotIn("shadowed", rec.events)  # a duplicate kind: the first schema wins

    def test_one_schema_of_kind_zero_describes_every_payload(self):
        h = pb.TraceHeader(format_version=1, recording_id="k0")
        s = h.events.add(kind=0, name="any")
        s.fields.add(name="a", type=crafted.UNSIGNED, offset=0, size=2)
        s.fields.add(name="rest", type=crafted.STRING, offset=2, size=6)
        rng = random.Random(7)
        records = [(100 + i, i % 2, bytes(rng.randrange(256) for _ in range(rng.randrange(0, 10))))
                   for i in range(300)]
        path = self.write("k0.data", crafted.file_bytes(h, [crafted.batch(0, records)]))
        lines, _ = dump_json(path)
        rec = perfstream.read(path)
        self.assert_same_as_dump(rec, lines)
        self.assertEqual(list(rec.events), ["any"])

    def test_invalid_utf8_becomes_latin1_code_points(self):
        h = pb.TraceHeader(format_version=1, recording_id="u")
        s = h.events.add(kind=0, name="t")
        s.fields.add(name="s", type=crafted.STRING, offset=0, size=12)
        texts = [b"ok\xc3\xa9", b"\xff\xfe", b"\xe2\x82", b"\xed\xa0\x80x", b"\xf4\x90\x80\x80", b"\xc0\xaf",
                 b"a\x01\x7f\"\\", b"\xf0\x9f\x98\x80!"]
        records = [(i + 1, 0, t.ljust(12, b"\0")) for i, t in enumerate(texts)]
        path = self.write("u.data", crafted.file_bytes(h, [crafted.batch(0, records)]))
        lines, _ = dump_json(path)
        rec = perfstream.read(path)
        self.assert_same_as_dump(rec, lines)
        self.assertEqual(rec["t"]["s"].tolist()[1], "\xff\xfe")

    def test_a_file_object_and_a_pipe_read_as_the_path(self):
        rng = random.Random(3)
        data = crafted.file_bytes(crafted.odd_header(), [crafted.batch(0, crafted.random_records(rng, 400))])
        path = self.write("f.data", data)
        by_path = package_lines(perfstream.read(path))
        self.assertEqual(package_lines(perfstream.read(io.BytesIO(data))), by_path)
        with open(path, "rb") as f:
            p = subprocess.Popen(["cat"], stdin=f, stdout=subprocess.PIPE)
            with p.stdout:
                self.assertEqual(package_lines(perfstream.read(p.stdout)), by_path)
            p.wait()

    def test_time_delta_planes_match_dump(self):
        # Format version 3: the deltas of every batch as byte planes, 1 to 8 bytes a record (wider than
        # needed too); negative deltas among them (random_records goes back in time now and then).
        rng = random.Random(12)
        records = crafted.random_records(rng, 2400)
        batches = []
        for seq in range(8):
            b = crafted.batch(seq, records[seq * 300:(seq + 1) * 300], [(1, 3, 0, 7, 0)])
            b.time_deltas[5] += 1 << (8 * seq - 1) if seq else 0  # a delta of seq + 1 bytes
            b.time_deltas[6] -= 1 << (8 * seq - 1) if seq else 0
            batches.append(crafted.with_planes(b, width=None if seq % 2 else 8, first=seq == 3))
        path = self.write("planes.data", crafted.file_bytes(crafted.odd_header(), batches, version=3))
        lines, _ = dump_json(path)
        self.assert_same_as_dump(perfstream.read(path), lines)

    def test_a_repeated_batch_is_read_once(self):
        rng = random.Random(4)
        records = crafted.random_records(rng, 100)
        b0, b1 = crafted.batch(0, records[:50]), crafted.batch(1, records[50:])
        path = self.write("dup.data", crafted.file_bytes(crafted.odd_header(), [b0, b1, b0]))
        lines, p = dump_json(path, check=False)
        self.assertEqual(p.returncode, 1)
        rec = perfstream.read(path)
        self.assert_same_as_dump(rec, lines)
        self.assertTrue(any("appears again" in x for x in rec.problems), rec.problems)


class DamagedFiles(unittest.TestCase):
    """A cut and a corrupt frame are exceptions that name the file and the frame's offset, as dump reports."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="perfstream-py-")
        rng = random.Random(11)
        self.records = crafted.random_records(rng, 3000)
        self.batches = [crafted.batch(i, self.records[i * 1000:(i + 1) * 1000]) for i in range(3)]
        self.data = crafted.file_bytes(crafted.odd_header(), self.batches, pb.TraceTrailer(batches=3, records=3000))
        # Frame offsets: file header, trace header, then the batches.
        self.offsets = []
        at = 16
        while at < len(self.data):
            self.offsets.append(at)
            at += 16 + struct.unpack_from("<I", self.data, at + 8)[0]

    def tearDown(self):
        shutil.rmtree(self.dir)

    def write(self, data, name="t.data"):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def dump_says(self, path):
        if not os.access(BINARY, os.X_OK):
            return None
        p = subprocess.run([BINARY, "dump", "--json", path], capture_output=True, text=True)
        return p.stderr

    def test_a_cut_short_file_raises_naming_the_offset(self):
        cut_frame = self.offsets[3]  # the third batch
        for cut in (cut_frame + 5, cut_frame + 40, len(self.data) - 1 - 0 * cut_frame):
            data = self.data[:cut]
            path = self.write(data)
            frame_at = max(o for o in self.offsets if o < cut)
            with self.assertRaises(perfstream.TruncatedError) as ctx:
                perfstream.read(path)
            e = ctx.exception
            self.assertEqual((e.path, e.offset), (path, frame_at))
            self.assertIn(path, str(e))
            self.assertIn("byte %d" % frame_at, str(e))
            said = self.dump_says(path)
            if said is not None:
                self.assertIn("byte %d" % frame_at, said)
            # Asked to, the reader keeps what came before the cut, as dump does.
            rec = perfstream.read(path, allow_truncated=True)
            self.assertEqual(len(rec.damage), 1)
            if os.access(BINARY, os.X_OK):
                lines, _ = dump_json(path, check=False)
                self.assertEqual(len(package_lines(rec)), len(lines))

    def test_corrupt_frames_raise_naming_the_offset(self):
        batch_at = self.offsets[2]
        cases = {
            "magic": (batch_at, b"X"),
            "crc": (batch_at + 9, bytes([self.data[batch_at + 9] ^ 0x40])),  # the length: the CRC no longer fits
            "zstd": (batch_at + 16 + 20, bytes([self.data[batch_at + 36] ^ 0xFF])),
            "checksum": (self.offsets[3] - 2, bytes([self.data[self.offsets[3] - 2] ^ 0x01])),
        }
        for what, (at, replacement) in cases.items():
            with self.subTest(what):
                data = self.data[:at] + replacement + self.data[at + len(replacement):]
                path = self.write(data, what + ".data")
                with self.assertRaises(perfstream.CorruptFrameError) as ctx:
                    perfstream.read(path)
                e = ctx.exception
                self.assertEqual((e.path, e.offset), (path, batch_at), str(e))
                self.assertIn("byte %d" % batch_at, str(e))
                said = self.dump_says(path)
                if said is not None:
                    self.assertIn("corrupt frame at byte %d" % batch_at, said)

    def test_a_batch_whose_columns_disagree_is_corrupt(self):
        bad = crafted.batch(3, self.records[:10])
        bad.record_count = 11
        data = self.data[:self.offsets[-1]] + crafted.frame(2, bad.SerializeToString())
        path = self.write(data)
        with self.assertRaises(perfstream.CorruptFrameError) as ctx:
            perfstream.read(path)
        self.assertEqual(ctx.exception.offset, self.offsets[-1])
        self.assertIn("record_count 11", str(ctx.exception))

    def test_a_frame_declaring_too_much_is_refused_before_decompressing(self):
        bomb = zstandard.ZstdCompressor(write_content_size=True, write_checksum=True).compress(b"\0" * (65 << 20))
        head = b"PSFR" + bytes([2, 1, 0, 0]) + struct.pack("<I", len(bomb))
        frame = head + struct.pack("<I", zlib.crc32(head)) + bomb
        path = self.write(self.data[:self.offsets[2]] + frame)
        with self.assertRaises(perfstream.CorruptFrameError) as ctx:
            perfstream.read(path)
        self.assertEqual(ctx.exception.offset, self.offsets[2])
        self.assertIn("over the reader's limit", str(ctx.exception))

    def test_a_zstd_frame_without_its_size_is_corrupt(self):
        payload = zstandard.ZstdCompressor(write_content_size=False).compress(self.batches[0].SerializeToString())
        head = b"PSFR" + bytes([2, 1, 0, 0]) + struct.pack("<I", len(payload))
        path = self.write(self.data[:self.offsets[2]] + head + struct.pack("<I", zlib.crc32(head)) + payload)
        with self.assertRaises(perfstream.CorruptFrameError) as ctx:
            perfstream.read(path)
        self.assertIn("does not declare", str(ctx.exception))

    def test_not_a_trace(self):
        with self.assertRaises(perfstream.NotATraceError):
            perfstream.read(self.write(b"hello world, this is not a trace"))


class ColumnarBatches(unittest.TestCase):
    """Format version 2 batches, as collector/format/columnar_payloads.cpp writes and reads them."""

    # The batch of tests/format/columnar_payloads_test.cpp, EncodesTheDocumentedBytes: two records of kind 5
    # (u32 kind, u32 pid, char comm[4], then a tail) in one column group.
    MESSAGE = bytes.fromhex(
        "08 07 10 e8 07 18 02 22 02 00 0a 2a 02 00 00 32 02 0e 0e 52 02 01 01 5a 3a 08 05 10 02"
        " 1a 08 10 04 18 01 22 02 0a 0a 1a 0b 08 04 10 04 18 02 22 03 c8 01 02"
        " 1a 0e 08 08 10 04 18 03 22 02 00 00 2a 02 61 62 22 0d 08 0c 18 04 22 02 00 01 32 03 78 79 7a")

    def payloads(self, message):
        from perfstream.batch import Batch
        b = Batch(message)
        return [bytes(b.message[b.payload_base + o:b.payload_base + o + n]) for o, n in zip(b.offsets, b.sizes)]

    def test_payloads_are_rebuilt_byte_for_byte(self):
        k = (5).to_bytes(4, "little")
        self.assertEqual(self.payloads(self.MESSAGE), [k + (100).to_bytes(4, "little") + b"ab\0\0xy",
                                                       k + (101).to_bytes(4, "little") + b"ab\0\0xz"])

    def test_a_time_offset_column_adds_the_records_time(self):
        # The batch of columnar_payloads_test.cpp, TheTimeFieldIsStoredAsItsOffsetFromTheRecordsTime: records
        # (u32 kind 6, u32 value, u64 ts) at times 1000, 1005, 1010, 1020, ts stored as ts - time.
        message = bytes.fromhex(
            "08 07 10 e8 07 18 04 22 04 00 0a 0a 14 2a 04 00 00 01 01 32 04 10 10 10 10 52 04 01 01 01 01"
            " 5a 2d 08 06 10 04 1a 0a 10 04 18 01 22 04 0c 0c 0c 0c 1a 0c 08 04 10 04 18 01 22 04 02 04 06 08"
            " 1a 0d 08 08 10 08 18 05 22 05 00 00 0d f9 0f")
        k = (6).to_bytes(4, "little")
        self.assertEqual(self.payloads(message),
                         [k + (v).to_bytes(4, "little") + ts.to_bytes(8, "little")
                          for v, ts in ((1, 1000), (2, 1005), (3, 1003), (4, 2**64 - 1))])

    def test_repeated_tails_are_rebuilt_from_the_groups_table(self):
        # The tail of columnar_payloads_test.cpp, ARepeatedTailIsWrittenAsTheIndexOfItsFirstOccurrence, on the
        # records of MESSAGE: REPEAT values new (shares 0) "xy", then entry 0 again.
        b = pb.Batch()
        b.ParseFromString(self.MESSAGE)
        b.groups[0].tail.encoding = 6
        b.groups[0].tail.values = b"\x00\x01"
        b.groups[0].tail.suffixes = b"xy"
        k = (5).to_bytes(4, "little")
        self.assertEqual(self.payloads(b.SerializeToString()), [k + (100).to_bytes(4, "little") + b"ab\0\0xy",
                                                                k + (101).to_bytes(4, "little") + b"ab\0\0xy"])
        from perfstream.batch import BatchError
        b.groups[0].tail.values = b"\x00\x03"
        with self.assertRaises(BatchError) as e:
            self.payloads(b.SerializeToString())
        self.assertEqual(str(e.exception), "batch 7: group 0 (kind 5) tail: record 1 repeats tail 1 but only 1 came "
                                           "before it")

    def test_a_corrupt_group_is_refused_with_the_cpp_readers_message(self):
        from perfstream.batch import BatchError
        b = pb.Batch()
        b.ParseFromString(self.MESSAGE)
        b.groups[0].columns[1].values = b.groups[0].columns[1].values[:-1]
        with self.assertRaises(BatchError) as e:
            self.payloads(b.SerializeToString())
        self.assertEqual(str(e.exception), "batch 7: group 0 (kind 5) column at offset 4 has 1 values for 2 records")
        b.ParseFromString(self.MESSAGE)
        b.groups[0].tail.values = b"\x00\x03"
        with self.assertRaises(BatchError) as e:
            self.payloads(b.SerializeToString())
        self.assertEqual(str(e.exception), "batch 7: group 0 (kind 5) tail: record 1 shares 3 bytes with the previous "
                                           "tail of 2 bytes, its own being 2")


class TimeDeltaPlanes(unittest.TestCase):
    """Format version 3 batches: the time deltas as byte planes (Batch field 12, time_delta_planes), read as the
    varints of field 4 are, and refused as collector/format/time_delta_planes.cpp refuses them."""

    def batch(self, first_time, deltas, sequence=9):
        n = len(deltas)
        return pb.Batch(sequence=sequence, first_time_ns=first_time, record_count=n, time_deltas=deltas,
                        cpus=[i % 3 for i in range(n)], sizes=[1] * n, payloads=b"x" * n)

    def times(self, message):
        from perfstream.batch import Batch
        return Batch(message).times.tolist()

    def refused(self, message):
        from perfstream.batch import Batch, BatchError
        with self.assertRaises(BatchError) as e:
            Batch(message)
        return str(e.exception)

    def test_planes_give_the_times_of_the_varints(self):
        for w in range(1, 9):
            # The largest zigzag values of w bytes, one of each sign; first_time_ns near 2^64, the sums wrap.
            top = 1 << (8 * w - 1)
            deltas = [0, 3, -1, -top, top - 1, -2, 1]
            for first_time in (0, 1000, 2**64 - 5):
                b = self.batch(first_time, deltas)
                expected, t = [], first_time
                for d in deltas:
                    t = (t + d) % 2**64
                    expected.append(t)
                self.assertEqual(self.times(b.SerializeToString()), expected)
                self.assertEqual(len(crafted.planes(deltas)), w * len(deltas))
                for width in (None, 8):  # the fewest bytes, and all 8 (high bytes 0)
                    for first in (False, True):
                        with self.subTest(w=w, first_time=first_time, width=width, first=first):
                            self.assertEqual(self.times(crafted.with_planes(b, width, first)), expected)

    def test_many_records_and_the_extreme_deltas(self):
        rng = random.Random(5)
        deltas = [rng.choice([rng.randrange(-3, 4), rng.randrange(1 << 20), rng.randrange(-2**63, 2**63)])
                  for _ in range(5000)] + [-2**63, 2**63 - 1]
        b = self.batch(2**64 - 1, deltas)
        self.assertEqual(len(crafted.planes(deltas)), 8 * len(deltas))
        self.assertEqual(self.times(crafted.with_planes(b)), self.times(b.SerializeToString()))

    def test_empty_planes_are_absent(self):
        b = self.batch(50, [1, -1, 2])
        self.assertEqual(self.times(b.SerializeToString() + crafted.planes_field(b"")), [51, 50, 52])

    def test_planes_and_varints_both_set_are_refused(self):
        b = self.batch(50, [1, -1, 2])
        self.assertEqual(self.refused(b.SerializeToString() + crafted.planes_field(crafted.planes([1, -1, 2]))),
                         "batch 9: time_deltas and time_delta_planes are both set")
        # Checked first: before the planes' length, and before the columns are counted.
        b.cpus.append(1)
        self.assertEqual(self.refused(b.SerializeToString() + crafted.planes_field(b"\x01")),
                         "batch 9: time_deltas and time_delta_planes are both set")

    def test_planes_of_a_length_that_is_not_n_times_1_to_8_are_refused(self):
        for n, length in ((3, 4), (3, 2), (3, 27), (2, 1), (0, 1), (0, 8), (1, 9)):
            with self.subTest(n=n, length=length):
                b = self.batch(50, [1] * n)
                del b.time_deltas[:]
                self.assertEqual(self.refused(b.SerializeToString() + crafted.planes_field(b"\x02" * length)),
                                 "batch 9: time_delta_planes has %d bytes for %d records (1 to 8 bytes a record)"
                                 % (length, n))
        # Before the columns are counted; after it, the planes are a time column of n entries.
        b = self.batch(50, [1, 1, 1])
        del b.cpus[1:]
        self.assertEqual(self.refused(crafted.with_planes(b) + b"\x62\x02\x00\x00"),
                         "batch 9: time_delta_planes has 2 bytes for 3 records (1 to 8 bytes a record)")
        self.assertEqual(self.refused(crafted.with_planes(b)),
                         "batch 9: record_count 3 but columns of 3 times, 1 CPUs and 3 sizes")

    def test_a_refused_batch_is_a_corrupt_frame(self):
        b = self.batch(50, [1, 2, 3])
        data = crafted.file_bytes(crafted.odd_header(), [crafted.with_planes(b) + crafted.planes_field(b"\x00")],
                                  version=3)
        with self.assertRaises(perfstream.CorruptFrameError) as e:
            perfstream.read(io.BytesIO(data))
        self.assertEqual(e.exception.reason, "corrupt frame: batch 9: time_delta_planes has 1 bytes for 3 records "
                                             "(1 to 8 bytes a record)")

    def test_versions_1_to_3_are_read_and_4_is_refused(self):
        rng = random.Random(8)
        records = crafted.random_records(rng, 500)
        plain = [crafted.batch(0, records[:200]), crafted.batch(1, records[200:])]
        expected = package_lines(perfstream.read(io.BytesIO(crafted.file_bytes(crafted.odd_header(), plain))))
        # Planes are read whatever version the file declares.
        planes = [crafted.with_planes(b) for b in plain]
        for version in (1, 2, 3):
            data = crafted.file_bytes(crafted.odd_header(), planes, version=version)
            self.assertEqual(package_lines(perfstream.read(io.BytesIO(data))), expected, "version %d" % version)
        data = crafted.file_bytes(crafted.odd_header(), planes, version=4)
        with self.assertRaises(perfstream.NotATraceError) as e:
            perfstream.read(io.BytesIO(data))
        self.assertEqual(e.exception.reason, "format version 4; this reader reads versions 1 to 3")


def _make_recording(path, *args):
    subprocess.run([MAKE_RECORDING, "-o", path, "-q", *args], check=True)


@unittest.skipUnless(os.access(BINARY, os.X_OK) and os.access(MAKE_RECORDING, os.X_OK),
                     "no perfstream or perfstream_make_recording binary")
class SyntheticRecordings(DumpComparison):
    """Recordings written by the recorder's own write path (perfstream_make_recording)."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="perfstream-py-")

    def tearDown(self):
        shutil.rmtree(self.dir)

    def check(self, *args, rotated=False):
        path = os.path.join(self.dir, "s.data")
        _make_recording(path, *args)
        lines, p = dump_json(path)
        rec = perfstream.read(path)
        self.assert_same_as_dump(rec, lines)
        self.assertEqual(rec.problems, [])
        if rotated:
            self.assertGreater(len(rec.pieces), 1)
        return rec

    def test_cpus_readers_and_lost_notices(self):
        rec = self.check("--records", "60000", "--cpus", "4", "--readers", "2", "--lost-every", "997",
                         "--batch-records", "4096")
        self.assertGreater(len(rec.lost), 0)
        # Written as `record` writes: format version 3, payloads in column groups and time deltas as byte planes
        # (a batch with records but no time_deltas), read back as dump reads them.
        with open(os.path.join(self.dir, "s.data"), "rb") as f:
            self.assertEqual(f.read(12)[8:], b"\x03\x00\x00\x00")
        with perfstream.frames.FrameReader(os.path.join(self.dir, "s.data")) as frames:
            first = pb.Batch()
            first.ParseFromString(next(m for t, _, m in iter(frames.next, None) if t == perfstream.frames.BATCH))
        self.assertGreater(first.record_count, 0)
        self.assertEqual(len(first.time_deltas), 0)
        df = rec["sched_switch"]
        self.assertEqual(len(df), 60000)
        self.assertEqual(str(df["time_ns"].dtype), "int64")
        self.assertEqual(str(df["prev_pid"].dtype), "int64")
        self.assertEqual(str(df["kind"].dtype), "uint64")
        self.assertEqual(df["prev_comm"].dtype, object)

    def test_ties_across_cpus(self):
        self.check("--records", "20000", "--cpus", "3", "--ties", "--lost-every", "101", "--batch-records", "1000")

    def test_rotated_pieces(self):
        self.check("--records", "50000", "--cpus", "2", "--rotate-size", "40K", "--batch-records", "2048",
                   rotated=True)

    def test_datetime_column(self):
        path = os.path.join(self.dir, "d.data")
        _make_recording(path, "--records", "1000")
        rec = perfstream.read(path, datetime=True)
        df = rec["sched_switch"]
        self.assertEqual(str(df["timestamp"].dtype), "datetime64[ns]")
        h = rec.header
        self.assertEqual(int(df["timestamp"].iloc[0].value),
                         int(df["time_ns"].iloc[0]) - h.start_time_ns + h.start_realtime_ns)


@unittest.skipUnless(os.access(BINARY, os.X_OK), "no perfstream binary at " + BINARY)
class RealRecordings(DumpComparison):
    """Recorded by the real binary with the built-in probes; skipped only where the kernel refuses BPF."""

    def test_exec_openat_sched_switch(self):
        d = tempfile.mkdtemp(prefix="perfstream-py-")
        try:
            path = os.path.join(d, "real.data")
            rec_proc = subprocess.Popen([BINARY, "record", "--probe", "exec,openat,sched_switch", "-a",
                                         "--duration", "1s", "-q", "-o", path],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            i = 0
            while rec_proc.poll() is None and i < 2000:  # execs and opens for as long as it records
                subprocess.run(["sh", "-c", "cat /etc/hostname /nonexistent-%d 2>/dev/null; true" % i],
                               stdout=subprocess.DEVNULL)
                time.sleep(0.02)
                i += 1
            out, err = rec_proc.communicate(timeout=60)
            if rec_proc.returncode != 0:
                refused = re.search(r"(Operation not permitted|Permission denied|bpf|BPF|verifier)", err)
                if os.geteuid() != 0 or refused:
                    self.skipTest("the kernel refused to load the probes (not root, or BPF refused): " +
                                  err.strip()[:300])
                self.fail("record failed: " + err)
            lines, p = dump_json(path)
            rec = perfstream.read(path)
            self.assert_same_as_dump(rec, lines)
            self.assertGreater(len(rec["sched_switch"]), 0)
            self.assertGreater(len(rec["exec"]), 0)
            self.assertGreater(len(rec["openat"]), 0)
        finally:
            shutil.rmtree(d)


@unittest.skipUnless(os.access(MAKE_RECORDING, os.X_OK), "no perfstream_make_recording binary")
class FormatPageExample(unittest.TestCase):
    """docs/FORMAT.md's Python example runs as written, on a recording named as it says."""

    def test_the_example_runs(self):
        with open(os.path.join(os.path.dirname(__file__), "..", "..", "docs", "FORMAT.md")) as f:
            page = f.read()
        example = page.split("`example.py`:", 1)[1].split("```python\n", 1)[1].split("```", 1)[0]
        d = tempfile.mkdtemp(prefix="perfstream-py-")
        try:
            _make_recording(os.path.join(d, "perfstream.data"), "--records", "5000", "--lost-every", "500")
            with open(os.path.join(d, "example.py"), "w") as f:
                f.write(example)
            p = subprocess.run(["/usr/bin/python3", "example.py"], cwd=d, capture_output=True, text=True)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("sched_switch", p.stdout)
        finally:
            shutil.rmtree(d)


if __name__ == "__main__":
    unittest.main()
