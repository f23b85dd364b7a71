"""Reading a whole recording: its pieces, its batches in file order, and its records as pandas DataFrames
in the time order `perfstream dump` prints (collector/recording/, collector/cli/dump.cpp).

Pieces: a single path that is a regular file is read, then FILE.1, FILE.2, ... for as long as the piece
just read ends with a trailer whose `rotated` is true (FILE.N for FILE being piece N: the base is FILE).
A list of paths is read as the pieces of one recording, sorted by their header's `piece`; they must share
one `recording_id`. A piece that is missing or belongs to another recording is a problem (see below).

Batches: every Batch frame in file order; a batch whose sequence number was read before is skipped (its
records are not counted twice), as in the C++ reader. A repeated TraceHeader frame is ignored; frames after
a trailer are read like any other (the C++ reader does the same). Sequence gaps, duplicates, reordering and
totals that disagree with the trailer are collected in Recording.problems (a list of sentences): they do
not stop reading.

Damage: a corrupt frame raises CorruptFrameError, a piece cut short TruncatedError, both naming the file
and the frame's byte offset. With allow_truncated=True a cut is recorded in Recording.damage instead, and
everything before it is kept (what `dump` does).

Order: every record and lost notice gets a place (the DataFrames' index, named "seq") in one order: by
time; at equal times a lost notice before a record; otherwise the order read (batches in file order, in
a batch its lost notices first, then its records). A lost notice's time is its time_ns, or when that is
0 the time of the record it precedes. This is a stable sort of the whole recording, the order `dump`
prints as long as it reports no record out of time order ("late"); a recording that makes dump report
late records is printed by dump in arrival order, not sorted, at those places.
"""
import os

import numpy as np
import pandas as pd

from . import perfstream_pb2 as pb
from .batch import MAX_BATCH_RECORDS, Batch, BatchError
from .decode import PAD, decode_columns, event_name, raw_hex, select_schemas
from .frames import (BATCH, HEADER, MAX_MESSAGE_BYTES, TRAILER, CorruptFrameError, FrameReader,
                     RecordingError, TruncatedError)



class Piece:
    """One file of a recording: its path, TraceHeader, TraceTrailer (None when it has none) and counts."""

    def __init__(self, path, header):
        self.path = path
        self.header = header
        self.trailer = None
        self.batches = 0
        self.records = 0

    def __repr__(self):
        return "Piece(%r, piece=%d, batches=%d, records=%d, trailer=%s)" % (
            self.path, self.header.piece, self.batches, self.records, self.trailer is not None)


def _base_of(path, piece):
    if piece == 0:
        return path
    suffix = "." + str(piece)
    return path[:-len(suffix)] if len(path) > len(suffix) and path.endswith(suffix) else None


class BatchStream:
    """The batches of a recording, in file order, as (piece index, Batch); streaming, one batch at a time.
    pieces, problems and damage fill in as it goes; problems is complete once the iteration ends."""

    def __init__(self, source, allow_truncated=False, max_batch_bytes=MAX_MESSAGE_BYTES,
                 max_batch_records=MAX_BATCH_RECORDS):
        self.allow_truncated = allow_truncated
        self.max_batch_bytes = max_batch_bytes
        self.max_batch_records = max_batch_records
        self.pieces = []
        self.problems = []
        self.damage = []
        self._seen = set()
        self._highest = None
        self._cpu_records = {}
        self._cpu_lost = {}      # kernel notices
        self._collector_lost = 0
        self._piece_problem = False
        if isinstance(source, (list, tuple)):
            readers = [self._open(s) for s in source]
            first = readers[0][1]
            for r, h in readers:
                if h.recording_id != first.recording_id:
                    raise RecordingError(r.path, None, "belongs to recording '%s', %s to recording '%s': name the "
                                         "pieces of one recording only" % (h.recording_id, readers[0][0].path,
                                                                           first.recording_id))
            readers.sort(key=lambda rh: rh[1].piece)
            for a, b in zip(readers, readers[1:]):
                if a[1].piece == b[1].piece:
                    raise RecordingError(b[0].path, None, "%s and %s are both piece %d: name each piece once"
                                         % (a[0].path, b[0].path, b[1].piece))
            self._named = readers
            self._base = None
        else:
            r, h = self._open(source)
            self._named = [(r, h)]
            path = os.fspath(source) if isinstance(source, (str, os.PathLike)) and source != "-" else None
            self._base = _base_of(path, h.piece) if path is not None and os.path.isfile(path) else None

    def _open(self, source):
        r = FrameReader(source, max_message_bytes=self.max_batch_bytes)
        h = pb.TraceHeader()
        try:
            h.ParseFromString(r.header_message)
        except Exception:
            r.close()
            raise CorruptFrameError(r.path, 16, "the trace header does not decode")
        return r, h

    @property
    def header(self):
        return self.pieces[0].header if self.pieces else self._named[0][1]

    def __iter__(self):
        named = list(self._named)
        while True:
            if named:
                reader, header = named.pop(0)
            else:
                nxt = self._next_discovered()
                if nxt is None:
                    break
                reader, header = nxt
            piece = Piece(reader.path, header)
            self.pieces.append(piece)
            with reader:
                yield from self._read_piece(len(self.pieces) - 1, piece, reader)
        self._finish_checks()

    def _next_discovered(self):
        if self._base is None or not self.pieces:
            return None
        last = self.pieces[-1]
        if last.trailer is None or not last.trailer.rotated:
            return None
        n = last.header.piece + 1
        path = "%s.%d" % (self._base, n)
        if not os.path.exists(path):
            self.problems.append("the recording continues in piece %d (%s), which is missing" % (n, path))
            self._piece_problem = True
            return None
        reader, header = self._open(path)
        if header.recording_id != self.header.recording_id or header.piece != n:
            reader.close()
            self.problems.append("%s is piece %d of recording '%s', not piece %d of '%s': not read"
                                 % (path, header.piece, header.recording_id, n, self.header.recording_id))
            self._piece_problem = True
            return None
        return reader, header

    def _read_piece(self, index, piece, reader):
        while True:
            try:
                frame = reader.next()
            except TruncatedError as e:
                if not self.allow_truncated:
                    raise
                self.damage.append(e)
                return
            if frame is None:
                return
            ftype, offset, message = frame
            if ftype == HEADER:
                continue  # a repeated header carries nothing new
            if ftype == TRAILER:
                trailer = pb.TraceTrailer()
                try:
                    trailer.ParseFromString(message)
                except Exception:
                    raise CorruptFrameError(reader.path, offset, "corrupt frame: the trailer does not decode")
                piece.trailer = trailer
                continue
            try:
                batch = Batch(message, self.max_batch_records)
            except BatchError as e:
                raise CorruptFrameError(reader.path, offset, "corrupt frame: %s" % e)
            piece.batches += 1
            piece.records += len(batch)
            if not self._sequence_ok(batch.sequence, "%s at byte %d" % (reader.path, offset)):
                continue
            if len(batch):
                if int(batch.cpus.max()) < 4096:
                    counts = np.bincount(batch.cpus)
                    cpus = np.flatnonzero(counts)
                    counts = counts[cpus]
                else:
                    cpus, counts = np.unique(batch.cpus, return_counts=True)
                for c, k in zip(cpus.tolist(), counts.tolist()):
                    self._cpu_records[c] = self._cpu_records.get(c, 0) + k
            for lost in batch.lost:
                if lost.from_collector:
                    self._collector_lost += lost.count
                else:
                    self._cpu_lost[lost.cpu] = self._cpu_lost.get(lost.cpu, 0) + lost.count
            yield index, batch

    def _sequence_ok(self, seq, where):
        if seq in self._seen:
            self.problems.append("batch %d appears again (%s); the copy was skipped" % (seq, where))
            return False
        if self._highest is not None and seq < self._highest:
            self.problems.append("batch %d comes after batch %d (%s): out of order" % (seq, self._highest, where))
        self._seen.add(seq)
        self._highest = seq if self._highest is None else max(self._highest, seq)
        return True

    def _finish_checks(self):
        if self._highest is not None:
            missing = self._highest + 1 - len(self._seen)
            if missing:
                self.problems.append("%d batches are missing below batch %d" % (missing, self._highest))
        if self.damage:
            return
        for p in self.pieces:
            t = p.trailer
            if t is not None and (t.batches != p.batches or t.records != p.records):
                self.problems.append("%s: its trailer counts %d batches and %d records, the file holds %d and %d"
                                     % (p.path, t.batches, t.records, p.batches, p.records))
        whole = bool(self.pieces) and not self._piece_problem and all(
            p.header.piece == i for i, p in enumerate(self.pieces))
        last = self.pieces[-1].trailer if self.pieces else None
        if not whole or last is None or last.rotated or not last.cpus:
            return
        if self._collector_lost == 0:
            for t in last.cpus:
                if self._cpu_records.get(t.cpu, 0) != t.samples:
                    self.problems.append("CPU %d: the trailer counts %d samples, the recording holds %d records"
                                         % (t.cpu, t.samples, self._cpu_records.get(t.cpu, 0)))
                if self._cpu_lost.get(t.cpu, 0) != t.lost:
                    self.problems.append("CPU %d: the trailer counts %d samples lost in the kernel, the recording's "
                                         "notices %d" % (t.cpu, t.lost, self._cpu_lost.get(t.cpu, 0)))
        elif sum(self._cpu_records.values()) + self._collector_lost != sum(t.samples for t in last.cpus):
            self.problems.append("the trailer's samples disagree with the records and the collector's notices")


class _Group:
    """The parts (one per batch) of one event's columns."""

    def __init__(self):
        self.ids = []
        self.times = []
        self.cpus = []
        self.columns = {}   # name -> list of (part index, values, missing)
        self.parts = 0


class Recording:
    """A recording read whole: header, pieces, per-event DataFrames and lost notices (see the module's
    docstring for the order). Use perfstream.read() to make one."""

    def __init__(self, source, datetime=False, allow_truncated=False, max_batch_bytes=MAX_MESSAGE_BYTES,
                 max_batch_records=MAX_BATCH_RECORDS):
        stream = BatchStream(source, allow_truncated, max_batch_bytes, max_batch_records)
        groups = {}
        lost_rows = []    # (arrival id, sort time, cpu, count, source, noted time, batch sequence, before)
        key_times = []
        key_kinds = []
        arrival = 0
        selection_cache = {}
        for piece_index, batch in stream:
            header = stream.pieces[piece_index].header
            for lost in batch.lost:
                lost_rows.append((arrival, lost.sort_time_ns, lost.cpu, lost.count,
                                  "collector" if lost.from_collector else "kernel", lost.time_ns, batch.sequence,
                                  lost.before))
                arrival += 1
            if batch.lost:
                key_times.append(np.array([l.sort_time_ns for l in batch.lost], np.uint64))
                key_kinds.append(np.zeros(len(batch.lost), np.uint8))
            n = len(batch)
            if n == 0:
                continue
            ids = np.arange(arrival, arrival + n, dtype=np.int64)
            arrival += n
            key_times.append(batch.times)
            key_kinds.append(np.ones(n, np.uint8))
            self._decode_batch(batch, header, ids, groups, selection_cache)
        self.header = stream.header
        self.pieces = stream.pieces
        self.problems = stream.problems
        self.damage = stream.damage
        total = arrival
        if key_times:
            times = np.concatenate(key_times)
            kinds = np.concatenate(key_kinds)
            del key_times, key_kinds
            order = np.argsort(times, kind="stable") if not lost_rows else np.lexsort((kinds, times))
            seq = np.empty(total, np.int64)
            seq[order] = np.arange(total, dtype=np.int64)
            del order, times, kinds
        else:
            seq = np.zeros(0, np.int64)
        start = self.header.start_time_ns
        realtime = self.header.start_realtime_ns
        self._events = {}
        for name, g in groups.items():
            self._events[name] = self._frame(g, seq, datetime, start, realtime)
        groups.clear()
        self.lost = self._lost_frame(lost_rows, seq, datetime, start, realtime)

    @staticmethod
    def _decode_batch(batch, header, ids, groups, selection_cache):
        blob = np.frombuffer(batch.message, np.uint8)[batch.payload_base:batch.payload_base + batch.payload_size]
        blob = np.concatenate([blob, np.zeros(PAD, np.uint8)])
        schemas = list(header.events)
        which = select_schemas(schemas, blob, batch.offsets, batch.sizes)
        present = np.flatnonzero(np.bincount(which + 1)) - 1
        for si in present.tolist():
            mask = which == si if present.size > 1 else slice(None)
            offsets, sizes = batch.offsets[mask], batch.sizes[mask]
            if si < 0:
                name, cols = "unknown", {"raw": (raw_hex(blob, offsets, sizes), None)}
            else:
                schema = schemas[si]
                name = event_name(schema)
                cols = decode_columns(schema, blob, offsets, sizes)
            g = groups.get(name)
            if g is None:
                g = groups[name] = _Group()
            g.ids.append(ids[mask])
            g.times.append(batch.times[mask])
            g.cpus.append(batch.cpus[mask])
            for col, (vals, missing) in cols.items():
                if col in ("time_ns", "cpu", "timestamp"):
                    col = "fields." + col
                g.columns.setdefault(col, []).append((g.parts, vals, missing))
            g.parts += 1

    @staticmethod
    def _frame(g, seq, datetime, start, realtime):
        ids = np.concatenate(g.ids)
        s = seq[ids]
        del ids
        perm = None if np.all(s[1:] > s[:-1]) else np.argsort(s, kind="stable")

        def arrange(a):
            return a if perm is None else a[perm]

        index = pd.Index(arrange(s), name="seq")
        lengths = [a.size for a in g.times]
        data = {}
        t = arrange(np.concatenate(g.times)).view(np.int64)
        data["time_ns"] = t
        if datetime:
            data["timestamp"] = _to_datetime(t, start, realtime)
        data["cpu"] = arrange(np.concatenate(g.cpus))
        for col, parts in g.columns.items():
            data[col] = _column(parts, lengths, arrange)
            g.columns[col] = None
        return pd.DataFrame(data, index=index, copy=False)

    @staticmethod
    def _lost_frame(rows, seq, datetime, start, realtime):
        cols = ["time_ns", "cpu", "lost", "source", "noted_time_ns", "batch", "before"]
        if not rows:
            df = pd.DataFrame({c: np.zeros(0, d) for c, d in zip(cols, [np.int64, np.uint32, np.uint64, object,
                                                                          np.int64, np.uint64, np.uint32])},
                              index=pd.Index(np.zeros(0, np.int64), name="seq"))
        else:
            ids = np.array([r[0] for r in rows], np.int64)
            s = seq[ids]
            perm = np.argsort(s, kind="stable")
            data = {
                "time_ns": np.array([r[1] for r in rows], np.uint64).view(np.int64)[perm],
                "cpu": np.array([r[2] for r in rows], np.uint32)[perm],
                "lost": np.array([r[3] for r in rows], np.uint64)[perm],
                "source": np.array([r[4] for r in rows], object)[perm],
                "noted_time_ns": np.array([r[5] for r in rows], np.uint64).view(np.int64)[perm],
                "batch": np.array([r[6] for r in rows], np.uint64)[perm],
                "before": np.array([r[7] for r in rows], np.uint32)[perm],
            }
            df = pd.DataFrame(data, index=pd.Index(s[perm], name="seq"))
        if datetime:
            df.insert(1, "timestamp", _to_datetime(df["time_ns"].to_numpy(), start, realtime))
        return df

    @property
    def events(self):
        """{event name: DataFrame}, one per event type found (records no schema describes: "unknown")."""
        return dict(self._events)

    def __getitem__(self, name):
        return self._events[name]

    def __contains__(self, name):
        return name in self._events

    def __repr__(self):
        counts = ", ".join("%s: %d" % (k, len(v)) for k, v in self._events.items())
        return "<perfstream.Recording %s pieces=%d {%s} lost notices=%d>" % (
            self.header.recording_id or "-", len(self.pieces), counts, len(self.lost))


def _to_datetime(t, start, realtime):
    """Wall-clock times: the header's clock pair (start_time_ns, start_realtime_ns) moves trace times to
    CLOCK_REALTIME; datetime64[ns], UTC, no time zone."""
    return (t.astype(np.int64) + np.int64(realtime - start)).view("datetime64[ns]")


def _column(parts, lengths, arrange):
    """One column from its parts; a part that lacks it (another schema of the same name) is missing."""
    by_part = {p: (v, m) for p, v, m in parts}
    kinds = {v.dtype for v, _ in by_part.values()}
    dtype = kinds.pop() if len(kinds) == 1 else np.dtype(object)
    values, masks = [], []
    any_missing = False
    for i, n in enumerate(lengths):
        if i in by_part:
            v, m = by_part[i]
            values.append(v if v.dtype == dtype else v.astype(object))
            masks.append(m if m is not None else np.zeros(n, bool))
            any_missing = any_missing or m is not None
        else:
            values.append(np.full(n, None, object) if dtype == object else np.zeros(n, dtype))
            masks.append(np.ones(n, bool))
            any_missing = True
    v = arrange(np.concatenate(values) if len(values) > 1 else values[0])
    if not any_missing or dtype == object:
        if any_missing:
            m = arrange(np.concatenate(masks))
            v[m] = None
        return v
    m = arrange(np.concatenate(masks))
    if dtype == np.int64:
        return pd.arrays.IntegerArray(v, m)
    if dtype == np.uint64:
        return pd.arrays.IntegerArray(v, m)
    return v


def read(source, *, datetime=False, allow_truncated=False, max_batch_bytes=MAX_MESSAGE_BYTES,
         max_batch_records=MAX_BATCH_RECORDS):
    """Reads a recording: a path (its rotated pieces FILE.1, ... follow), "-" for standard input, a binary
    file object, or a list of the pieces' paths. Returns a Recording."""
    return Recording(source, datetime=datetime, allow_truncated=allow_truncated, max_batch_bytes=max_batch_bytes,
                     max_batch_records=max_batch_records)


def batches(source, *, allow_truncated=False, max_batch_bytes=MAX_MESSAGE_BYTES,
            max_batch_records=MAX_BATCH_RECORDS):
    """The batches of a recording in file order, one at a time (bounded memory): a BatchStream of
    (piece index, Batch); Batch has times (uint64), cpus, offsets, sizes, lost and the message bytes."""
    return BatchStream(source, allow_truncated, max_batch_bytes, max_batch_records)
