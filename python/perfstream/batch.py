"""One perfstream.v1.Batch decoded from its wire bytes into numpy columns, with the rules of
collector/recording/decoded_batch.cpp (the C++ reader), so that both accept and refuse the same batches:

  - fields may come in any order; a scalar given twice counts as its last value; repeated numbers are read
    packed or one by one and appended in order; unknown fields are skipped; a known field with a wire type
    other than the expected one is skipped too, except the repeated numbers (time_deltas, cpus, sizes),
    where any wire type but 0 and 2 makes the message invalid; field number 0, groups and wire types 6-7
    make it invalid;
  - time_deltas are zigzag (sint64); times are first_time_ns + the running sum, in unsigned 64-bit
    arithmetic (it wraps as C++'s does); cpus keep their low 32 bits; sizes are clamped to 2^32-1;
  - format version 3: time_delta_planes (field 12, bytes) may hold the deltas instead. When it is not
    empty it must be n*w bytes for the n = record_count records, w in 1..8, and time_deltas must have no
    entries (both are checked before the columns are counted); record i's zigzag delta is the little-endian
    integer whose byte k is planes[k*n + i] (its higher bytes 0), decoded and summed as time_deltas are.
    Empty planes count as absent, given twice the last counts, another wire type is skipped; a batch is
    read so whatever version its file declares (decoded_batch.cpp, time_delta_planes.cpp);
  - the columns must each have record_count entries; the sizes must add up to the payload bytes exactly;
    a lost notice's `before` (clamped to 2^32-1) is at most record_count;
  - a lost notice's sort time is its time_ns, or, when that is 0, the time of the record it precedes (the
    batch's last record when before == record_count, first_time_ns when the batch has none);
  - a batch declaring or holding more than max_records records is refused (BatchError) before its
    columns are built;
  - format version 2: record_groups (field 10) and groups (field 11, ColumnGroup) hold payloads field by
    field; they are rebuilt byte for byte (docs/FORMAT.md, "Columnar batches") into a buffer that then
    stands for `message`, so that payload_base/offsets/sizes work the same with groups or without. The
    checks and their messages are those of collector/format/columnar_payloads.cpp.
No Python object is made per record, except for a group's tail (one slice per record): varints are
decoded with numpy.
"""
import numpy as np

MAX_BATCH_RECORDS = 1 << 20
MAX_PAYLOAD_BYTES = 256 << 20  # a version 2 batch's rebuilt payloads (DecodedBatch::kMaxPayloadBytes)
MAX_FIXED_SIZE = 1 << 16
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


def _join_planes(name, planes, n):
    """The n zigzag values (uint64) held in `planes` (a uint8 array of n*w bytes, w in 1..8) byte plane by
    byte plane: byte k of value i is planes[k*n + i], its bytes w..7 are 0. Raises BatchError on another
    length."""
    w = planes.size // n if n else 0
    if w < 1 or w > 8 or planes.size != n * w:
        raise BatchError("%s: time_delta_planes has %d bytes for %d records (1 to 8 bytes a record)"
                         % (name, planes.size, n))
    wide = np.zeros((n, 8), np.uint8)
    wide[:, :w] = planes.reshape(w, n).T
    return wide.view("<u8").reshape(n).astype(np.uint64)


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

    def __init__(self, message, max_records=MAX_BATCH_RECORDS, max_payload_bytes=MAX_PAYLOAD_BYTES):
        self.message = message
        self.sequence = 0
        self.first_time_ns = 0
        self.watermark_ns = 0
        self.lost = []
        self.payload_base = 0
        self.payload_size = 0
        record_count = 0
        groups_of, n_groups_of, groups = [], 0, []
        columns = {4: [], 5: [], 6: []}  # numbers, as uint8 spans (packed) or single values
        counts = {4: 0, 5: 0, 6: 0}
        limit = max_records + 1
        mv = memoryview(message)
        buf = np.frombuffer(message, np.uint8)
        planes = buf[:0]  # time_delta_planes (field 12), empty when absent
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
            if field == 12 and wt == 2:
                n, p = _varint(mv, p, end)
                if n > end - p:
                    raise BatchError("batch: not a valid Batch message")
                planes = buf[p:p + n]
                p += n
                continue
            if field == 10:
                if wt == 0:
                    v, p = _varint(mv, p, end)
                    groups_of.append(np.array([v], np.uint64))
                    n_groups_of += 1
                elif wt == 2:
                    n, p = _varint(mv, p, end)
                    if n > end - p:
                        raise BatchError("batch: not a valid Batch message")
                    vals = decode_varints(buf[p:p + n])
                    p += n
                    groups_of.append(vals)
                    n_groups_of += vals.size
                else:
                    raise BatchError("batch: not a valid Batch message")
                over = n_groups_of > limit
                continue
            if field == 11 and wt == 2:
                n, p = _varint(mv, p, end)
                if n > end - p:
                    raise BatchError("batch: not a valid Batch message")
                groups.append(_read_group(mv, p, p + n))
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
        self._resolve(record_count, columns, planes, groups_of, groups, max_payload_bytes)

    def _resolve(self, n, columns, planes, groups_of, groups, max_payload_bytes):
        name = "batch %d" % self.sequence

        def joined(f):
            parts = columns[f]
            return parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts else np.zeros(0, np.uint64))

        deltas, cpus, sizes = joined(4), joined(5), joined(6)
        if planes.size:
            if deltas.size:
                raise BatchError(name + ": time_deltas and time_delta_planes are both set")
            deltas = _join_planes(name, planes, n)
        if deltas.size != n or cpus.size != n or sizes.size != n:
            raise BatchError("%s: record_count %d but columns of %d times, %d CPUs and %d sizes"
                             % (name, n, deltas.size, cpus.size, sizes.size))
        with np.errstate(over="ignore"):
            self.times = np.uint64(self.first_time_ns) + np.cumsum(_unzigzag(deltas), dtype=np.uint64)
        self.cpus = (cpus & np.uint64(_U32_MAX)).astype(np.uint32)
        sizes = np.minimum(sizes, np.uint64(_U32_MAX)).astype(np.int64)
        if groups_of or groups:
            rg = groups_of[0] if len(groups_of) == 1 else (np.concatenate(groups_of) if groups_of
                                                           else np.zeros(0, np.uint64))
            rg = np.minimum(rg, np.uint64(_U32_MAX)).astype(np.int64)
            raw = self.message[self.payload_base:self.payload_base + self.payload_size]
            self.message = _rebuild(name, sizes, self.times, rg, raw, groups, max_payload_bytes)
            self.payload_base, self.payload_size = 0, len(self.message)
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


# --- format version 2: column groups ------------------------------------------------------------------

_RAW, _ZIGZAG, _DELTA, _STRING, _PREFIX, _TIME_OFFSET, _REPEAT = range(7)


class _Column:
    __slots__ = ("offset", "width", "encoding", "values", "strings", "suffixes")

    def __init__(self):
        self.offset = self.width = self.encoding = 0
        self.values = self.suffixes = b""
        self.strings = []


class _Group:
    __slots__ = ("kind", "record_count", "columns", "tail")

    def __init__(self):
        self.kind = self.record_count = 0
        self.columns = []
        self.tail = None


def _read_bytes(mv, p, end):
    n, p = _varint(mv, p, end)
    if n > end - p:
        raise BatchError("batch: not a valid Batch message")
    return bytes(mv[p:p + n]), p + n


def _read_column(mv, p, end):
    c = _Column()
    while p < end:
        tag, p = _varint(mv, p, end)
        f, wt = tag >> 3, tag & 7
        if f == 0:
            raise BatchError("batch: not a valid Batch message")
        if wt == 0 and f in (1, 2, 3):
            v, p = _varint(mv, p, end)
            v = min(v, _U32_MAX)
            if f == 1:
                c.offset = v
            elif f == 2:
                c.width = v
            else:
                c.encoding = v
        elif wt == 2 and f == 4:
            c.values, p = _read_bytes(mv, p, end)
        elif wt == 2 and f == 5:
            s, p = _read_bytes(mv, p, end)
            c.strings.append(s)
        elif wt == 2 and f == 6:
            c.suffixes, p = _read_bytes(mv, p, end)
        else:
            p = _skip(mv, p, end, wt)
    return c


def _read_group(mv, p, end):
    g = _Group()
    while p < end:
        tag, p = _varint(mv, p, end)
        f, wt = tag >> 3, tag & 7
        if f == 0:
            raise BatchError("batch: not a valid Batch message")
        if wt == 0 and f in (1, 2):
            v, p = _varint(mv, p, end)
            if f == 1:
                g.kind = v & _U32_MAX
            else:
                g.record_count = v
        elif wt == 2 and f in (3, 4):
            n, p = _varint(mv, p, end)
            if n > end - p:
                raise BatchError("batch: not a valid Batch message")
            c = _read_column(mv, p, p + n)
            p += n
            if f == 3:
                g.columns.append(c)
            else:
                g.tail = c
        else:
            p = _skip(mv, p, end, wt)
    return g


def _count_error(what, values, records):
    return "%s has %d values for %d records" % (what, values, records)


def _rebuild(name, sizes, times, record_groups, raw, groups, max_bytes):
    """The payloads of every record, back to back in record order (bytes), as rebuild_payloads does; `times`
    are the records' times (uint64), which TIME_OFFSET columns add to."""
    n = sizes.size
    if record_groups.size and record_groups.size != n:
        raise BatchError("%s: %s" % (name, _count_error("record_groups", record_groups.size, n)))
    if not record_groups.size and groups:
        raise BatchError(name + ": column groups but no record_groups")
    if not record_groups.size:
        record_groups = np.zeros(n, np.int64)
    if n and record_groups.max() > len(groups):
        raise BatchError("%s: a record is in group %d but the batch has %d groups"
                         % (name, int(record_groups.max()), len(groups)))
    counts = np.bincount(record_groups, minlength=len(groups) + 1) if n else np.zeros(len(groups) + 1, np.int64)
    for g, group in enumerate(groups):
        if group.record_count != counts[g + 1]:
            raise BatchError("%s: group %d (kind %d) has record_count %d but %d records are in it"
                             % (name, g, group.kind, group.record_count, counts[g + 1]))
    ends = np.cumsum(sizes)
    offsets = ends - sizes
    total = int(ends[-1]) if n else 0
    if total > max_bytes:
        raise BatchError("%s: its records' payloads add up to %d bytes, over the reader's limit of %d"
                         % (name, total, max_bytes))
    is_raw = record_groups == 0
    raw_total = int(sizes[is_raw].sum())
    if raw_total != len(raw):
        raise BatchError("%s: the raw records' sizes add up to %d bytes but payloads has %d"
                         % (name, raw_total, len(raw)))
    out = np.zeros(total, np.uint8)
    if raw_total:
        # Each raw record's bytes go to its place: byte j of the raw bytes belongs to the raw record whose
        # range holds it.
        raw_sizes = sizes[is_raw]
        raw_starts = np.repeat(offsets[is_raw] - (np.cumsum(raw_sizes) - raw_sizes), raw_sizes)
        out[np.arange(raw_total) + raw_starts] = np.frombuffer(raw, np.uint8)
    for g, group in enumerate(groups):
        gname = "%s: group %d (kind %d)" % (name, g, group.kind)
        members = np.flatnonzero(record_groups == g + 1)
        at = 0
        for c in group.columns:
            col = "%s column at offset %d" % (gname, c.offset)
            if c.offset != at:
                raise BatchError("%s: the previous column ends at %d" % (col, at))
            if c.width == 0:
                raise BatchError(col + ": width 0")
            if c.encoding > _TIME_OFFSET or c.encoding == _PREFIX:
                raise BatchError("%s: encoding %d is not one of a fixed column's (0-3, 5)" % (col, c.encoding))
            if c.encoding in (_ZIGZAG, _DELTA, _TIME_OFFSET) and c.width > 8:
                raise BatchError("%s: an integer column of width %d (at most 8)" % (col, c.width))
            at += c.width
            if at > MAX_FIXED_SIZE:
                raise BatchError("%s: columns cover more than %d bytes" % (gname, MAX_FIXED_SIZE))
        fixed = at
        if group.tail is not None and group.tail.encoding not in (_PREFIX, _REPEAT):
            raise BatchError("%s tail: encoding %d, not PREFIX (4) or REPEAT (6)" % (gname, group.tail.encoding))
        msizes = sizes[members]
        if members.size and msizes.min() < fixed:
            i = int(members[np.flatnonzero(msizes < fixed)[0]])
            raise BatchError("%s: record %d has %d bytes, fewer than the group's fixed %d"
                             % (gname, i, int(sizes[i]), fixed))
        if group.tail is None and members.size and msizes.max() != fixed:
            i = int(members[np.flatnonzero(msizes != fixed)[0]])
            raise BatchError("%s: record %d has bytes after the fixed part but the group no tail" % (gname, i))
        starts = offsets[members]
        for c in group.columns:
            col = "%s column at offset %d" % (gname, c.offset)
            w = c.width
            places = (starts + c.offset)[:, None] + np.arange(w)
            if c.encoding == _RAW:
                data = np.frombuffer(c.values, np.uint8)
                have = min(data.size // w, members.size) if data.size < members.size * w else \
                    members.size + (data.size - members.size * w + w - 1) // w
                if data.size != members.size * w:
                    raise BatchError(_count_error(col, have, members.size))
                out[places] = data.reshape(-1, w)
                continue
            vals = decode_varints(np.frombuffer(c.values, np.uint8))
            if vals.size != members.size:
                raise BatchError(_count_error(col, vals.size, members.size))
            if c.encoding == _STRING:
                if vals.size and int(vals.max()) >= len(c.strings):
                    raise BatchError("%s: string index %d but %d strings" % (col, int(vals.max()), len(c.strings)))
                table = np.zeros((max(len(c.strings), 1), w), np.uint8)
                for k, text in enumerate(c.strings):
                    if len(text) > w:
                        raise BatchError("%s: a string of %d bytes in a column of width %d" % (col, len(text), w))
                    table[k, :len(text)] = np.frombuffer(text, np.uint8)
                out[places] = table[vals.astype(np.int64)]
                continue
            with np.errstate(over="ignore"):
                x = _unzigzag(vals)
                if c.encoding == _DELTA:
                    x = np.cumsum(x, dtype=np.uint64)
                elif c.encoding == _TIME_OFFSET:
                    x = x + times[members]
            out[places] = x.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :w]
        if group.tail is not None:
            _rebuild_tail(gname, group.tail, fixed, members, sizes, offsets, out)
    return out.tobytes()


def _rebuild_tail(gname, tail, fixed, members, sizes, offsets, out):
    col = gname + " tail"
    shared = decode_varints(np.frombuffer(tail.values, np.uint8))
    if shared.size != members.size:
        raise BatchError(_count_error(col, shared.size, members.size))
    suffixes = tail.suffixes
    at = 0
    previous = b""
    repeats = tail.encoding == _REPEAT
    table = []  # REPEAT: the group's table of tails so far
    for k, i in enumerate(members.tolist()):
        size = int(sizes[i]) - fixed
        s = int(shared[k])
        if repeats and s & 1:
            e = s >> 1
            if e >= len(table):
                raise BatchError("%s: record %d repeats tail %d but only %d came before it" % (col, i, e, len(table)))
            if len(table[e]) != size:
                raise BatchError("%s: record %d repeats tail %d of %d bytes, its own being %d"
                                 % (col, i, e, len(table[e]), size))
            start = int(offsets[i]) + fixed
            out[start:start + size] = np.frombuffer(table[e], np.uint8)
            previous = table[e]
            continue
        if repeats:
            s >>= 1
        if s > size or s > len(previous):
            raise BatchError("%s: record %d shares %d bytes with the previous tail of %d bytes, its own being %d"
                             % (col, i, s, len(previous), size))
        rest = size - s
        if rest > len(suffixes) - at:
            raise BatchError("%s: the suffixes run out at record %d" % (col, i))
        value = previous[:s] + suffixes[at:at + rest]
        at += rest
        start = int(offsets[i]) + fixed
        out[start:start + size] = np.frombuffer(value, np.uint8)
        previous = value
        if repeats:
            table.append(value)
    if at != len(suffixes):
        raise BatchError("%s: %d suffix bytes belong to no record" % (col, len(suffixes) - at))
