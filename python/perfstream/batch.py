"""One perfstream.v1.Batch decoded from its wire bytes into numpy columns, with the rules of
collector/recording/decoded_batch.cpp (the C++ reader), so that both accept and refuse the same batches:

  - fields may come in any order; a scalar given twice counts as its last value; repeated numbers are read
    packed or one by one and appended in order; unknown fields are skipped; a known field with a wire type
    other than the expected one is skipped too, except the repeated numbers (time_deltas, cpus, sizes),
    where any wire type but 0 and 2 makes the message invalid; field number 0, groups and wire types 6-7
    make it invalid;
  - time_deltas are zigzag (sint64); times are first_time_ns + the running sum, in unsigned 64-bit
    arithmetic (it wraps as C++'s does); cpus keep their low 32 bits; sizes are clamped to 2^32-1;
  - the columns must each have record_count entries; the sizes must add up to the payload bytes exactly;
    a lost notice's `before` (clamped to 2^32-1) is at most record_count;
  - a lost notice's sort time is its time_ns, or, when that is 0, the time of the record it precedes (the
    batch's last record when before == record_count, first_time_ns when the batch has none);
  - a batch declaring or holding more than max_records records is refused (BatchError) before its
    columns are built.
No Python object is made per record: varints are decoded with numpy.
"""
import numpy as np

MAX_BATCH_RECORDS = 1 << 20
_U32_MAX = 0xFFFFFFFF


class BatchError(Exception):
    pass


def _varint(mv, p, end):
    """(value, next position); raises BatchError on a varint cut short or longer than 10 bytes."""
    v = 0
    shift = 0
    while shift < 64:
        if p >= end:
            break
        b = mv[p]
        p += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v & 0xFFFFFFFFFFFFFFFF, p
        shift += 7
    raise BatchError("batch: not a valid Batch message")


def decode_varints(buf):
    """The unsigned varints packed in `buf` (a uint8 array) as uint64, as decoded_batch.cpp reads them."""
    n = buf.size
    if n == 0:
        return np.zeros(0, np.uint64)
    term = buf < 0x80
    if term.all():
        return buf.astype(np.uint64)
    ends = np.flatnonzero(term)
    if ends.size == 0 or ends[-1] != n - 1:
        raise BatchError("batch: not a valid Batch message")
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1
    lens = ends - starts + 1
    if lens.max() > 10:
        raise BatchError("batch: not a valid Batch message")
    pos = np.arange(n, dtype=np.int64) - np.repeat(starts, lens)
    vals = (buf & 0x7F).astype(np.uint64) << (pos * 7).astype(np.uint64)
    return np.bitwise_or.reduceat(vals, starts)


def _unzigzag(v):
    return (v >> np.uint64(1)) ^ (np.uint64(0) - (v & np.uint64(1)))


class LostNotice:
    __slots__ = ("cpu", "count", "time_ns", "before", "from_collector", "sort_time_ns")

    def __init__(self):
        self.cpu = self.count = self.time_ns = self.before = 0
        self.from_collector = False
        self.sort_time_ns = 0


def _read_lost(mv, p, end):
    e = LostNotice()
    while p < end:
        tag, p = _varint(mv, p, end)
        wt = tag & 7
        if wt != 0:
            p = _skip(mv, p, end, wt)
            continue
        v, p = _varint(mv, p, end)
        f = tag >> 3
        if f == 1:
            e.cpu = v & _U32_MAX
        elif f == 2:
            e.count = v
        elif f == 3:
            e.time_ns = v
        elif f == 4:
            e.before = min(v, _U32_MAX)
        elif f == 5:
            e.from_collector = v == 1
    return e


def _skip(mv, p, end, wt):
    if wt == 0:
        return _varint(mv, p, end)[1]
    if wt == 1:
        n = 8
    elif wt == 5:
        n = 4
    elif wt == 2:
        n, p = _varint(mv, p, end)
    else:
        raise BatchError("batch: not a valid Batch message")
    if n > end - p:
        raise BatchError("batch: not a valid Batch message")
    return p + n


class Batch:
    """Columns of one batch. `payload_base` is where the payloads start in `message` (a bytes object);
    record i's payload is message[payload_base + offsets[i] : ... + sizes[i]]."""

    def __init__(self, message, max_records=MAX_BATCH_RECORDS):
        self.message = message
        self.sequence = 0
        self.first_time_ns = 0
        self.watermark_ns = 0
        self.lost = []
        self.payload_base = 0
        self.payload_size = 0
        record_count = 0
        columns = {4: [], 5: [], 6: []}  # numbers, as uint8 spans (packed) or single values
        counts = {4: 0, 5: 0, 6: 0}
        limit = max_records + 1
        mv = memoryview(message)
        buf = np.frombuffer(message, np.uint8)
        p, end = 0, len(message)
        over = False
        while p < end and not over:
            tag, p = _varint(mv, p, end)
            field, wt = tag >> 3, tag & 7
            if field == 0:
                raise BatchError("batch: not a valid Batch message")
            if field in (1, 2, 3, 9) and wt == 0:
                v, p = _varint(mv, p, end)
                if field == 1:
                    self.sequence = v
                elif field == 2:
                    self.first_time_ns = v
                elif field == 3:
                    record_count = v
                    over = v > max_records
                else:
                    self.watermark_ns = v
                continue
            if field in (4, 5, 6):
                if wt == 0:
                    v, p = _varint(mv, p, end)
                    columns[field].append(np.array([v], np.uint64))
                    counts[field] += 1
                elif wt == 2:
                    n, p = _varint(mv, p, end)
                    if n > end - p:
                        raise BatchError("batch: not a valid Batch message")
                    vals = decode_varints(buf[p:p + n])
                    p += n
                    columns[field].append(vals)
                    counts[field] += vals.size
                else:
                    raise BatchError("batch: not a valid Batch message")
                over = counts[field] > limit
                continue
            if field == 7 and wt == 2:
                n, p = _varint(mv, p, end)
                if n > end - p:
                    raise BatchError("batch: not a valid Batch message")
                self.payload_base, self.payload_size = p, n
                p += n
                continue
            if field == 8 and wt == 2:
                n, p = _varint(mv, p, end)
                if n > end - p:
                    raise BatchError("batch: not a valid Batch message")
                self.lost.append(_read_lost(mv, p, p + n))
                p += n
                over = len(self.lost) > limit - 1
                continue
            p = _skip(mv, p, end, wt)
        if over:
            raise BatchError("batch %d: holds more than %d records, the reader's limit per batch "
                             "(--max-batch-records)" % (self.sequence, max_records))
        self._resolve(record_count, columns)

    def _resolve(self, n, columns):
        name = "batch %d" % self.sequence

        def joined(f):
            parts = columns[f]
            return parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else np.zeros(0, np.uint64))

        deltas, cpus, sizes = joined(4), joined(5), joined(6)
        if deltas.size != n or cpus.size != n or sizes.size != n:
            raise BatchError("%s: record_count %d but columns of %d times, %d CPUs and %d sizes"
                             % (name, n, deltas.size, cpus.size, sizes.size))
        with np.errstate(over="ignore"):
            self.times = np.uint64(self.first_time_ns) + np.cumsum(_unzigzag(deltas), dtype=np.uint64)
        self.cpus = (cpus & np.uint64(_U32_MAX)).astype(np.uint32)
        sizes = np.minimum(sizes, np.uint64(_U32_MAX)).astype(np.int64)
        ends = np.cumsum(sizes)
        total = int(ends[-1]) if n else 0
        if total > self.payload_size:
            raise BatchError(name + ": record sizes run past the payload bytes")
        if total != self.payload_size:
            raise BatchError("%s: %d payload bytes belong to no record" % (name, self.payload_size - total))
        self.sizes = sizes
        self.offsets = ends - sizes
        for lost in self.lost:
            if lost.before > n:
                raise BatchError(name + ": a lost notice points past the last record")
            lost.sort_time_ns = lost.time_ns
            if lost.sort_time_ns == 0:
                if lost.before < n:
                    lost.sort_time_ns = int(self.times[lost.before])
                elif n > 0:
                    lost.sort_time_ns = int(self.times[n - 1])
                else:
                    lost.sort_time_ns = self.first_time_ns

    def __len__(self):
        return self.times.size
