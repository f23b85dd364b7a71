"""Payloads decoded by their EventSchema into numpy columns, with the rules of `perfstream dump --json --raw-fields`
(collector/decode/payload_schema.cpp, collector/cli/dump.cpp); docs/FORMAT.md states them for readers:

  Schema selection (per piece, from that piece's header): when the header has exactly one schema and its
  kind is 0, it describes every payload. Otherwise a payload shorter than 4 bytes has none; else its first
  4 bytes, a little-endian u32, select the first schema (in header order) with that kind. A payload with
  no schema is event "unknown" with its bytes as hex in `raw`. An event's name is the schema's `name`,
  else its `type_name`, else "unknown".

  Fields: SIGNED/UNSIGNED of size 1..8: little-endian, SIGNED sign-extended from size*8 bits; missing
  (null) when offset+size passes the payload's end, and always when the size is 0 or over 8. STRING/BYTES:
  missing when offset > payload size (offset == size gives ""); else len = min(size, payload - offset),
  and when `length_field` is set, for each field of that name (in order) whose value can be read as an
  integer (1..8 bytes inside the payload, read zero-extended whatever its type), len = min(len, value):
  a negative length field is a huge unsigned number and so does not shorten. STRING: up to the first NUL
  within len (all len bytes, NULs included, for a STRING hinted argv or path_argv: the only hints that change
  decoding); bytes that are not valid UTF-8 become the code point of the same value (U+0080..U+00FF), as
  dump writes them (\\u00XX). BYTES: lower-case hex of the len bytes. Any other field type: missing.
"""
import codecs

import numpy as np

# Field.Type
SIGNED, UNSIGNED, STRING, BYTES = 1, 2, 3, 4

_WIDE_FIELD = 256  # string/bytes fields wider than this are decoded record by record (paths, argv)
PAD = 512  # zero bytes the caller appends to a batch's payloads: fixed-width gathers never run past them


def _latin1_fallback(err):
    # Every byte of an invalid UTF-8 sequence becomes the character of the same number, as dump's JSON does.
    bad = err.object[err.start:err.end]
    return "".join(chr(b) for b in bad), err.end


codecs.register_error("perfstream-latin1", _latin1_fallback)


def decode_text(b):
    """Bytes of a STRING field (up to its NUL) as the str dump's JSON holds."""
    return b.decode("utf-8", "perfstream-latin1")


def event_name(schema):
    if schema is None:
        return "unknown"
    return schema.name or schema.type_name or "unknown"


def select_schemas(schemas, blob, offsets, sizes):
    """For each record, the index of its schema in `schemas`, or -1 (unknown)."""
    n = offsets.size
    if len(schemas) == 1 and schemas[0].kind == 0:
        return np.zeros(n, np.int64)
    which = np.full(n, -1, np.int64)
    if n == 0 or not schemas:
        return which
    first = {}
    for i, s in enumerate(schemas):
        first.setdefault(s.kind, i)
    ok = sizes >= 4
    kinds = _gather_uint(blob, offsets, 4)
    for kind, i in first.items():
        which[ok & (kinds == kind)] = i
    return which


def _gather_rows(blob, starts, width):
    """A (n, width) uint8 array: `width` bytes of `blob` from each start (blob is padded by the caller)."""
    if starts.size == 0:
        return np.zeros((0, width), np.uint8)
    starts = np.minimum(starts, blob.size - width)  # rows past the end are masked out by the caller
    view = np.ndarray(shape=(blob.size - width + 1,), dtype=np.dtype((np.void, width)), buffer=blob, strides=(1,))
    return view[starts].view(np.uint8).reshape(starts.size, width)


def _gather_uint(blob, starts, size):
    """Little-endian unsigned integers of `size` (1..8) bytes at each start, as uint64."""
    rows = _gather_rows(blob, starts, size)
    if size in (1, 2, 4, 8):
        return rows.copy().view("<u%d" % size).reshape(-1).astype(np.uint64)
    out = np.zeros(starts.size, np.uint64)
    for k in range(size):
        out |= rows[:, k].astype(np.uint64) << np.uint64(8 * k)
    return out


def _dedupe_decode(rows, lens, convert):
    """Applies convert(bytes) once per distinct row (rows zeroed past their lengths) and spreads the results:
    an object array whose equal values share one Python object."""
    n = rows.shape[0]
    out = np.empty(n, object)
    if n == 0:
        return out
    width = rows.shape[1]
    pad = (-width) % 8
    key = np.concatenate([rows, np.zeros((n, pad), np.uint8)], axis=1) if pad else rows
    words = np.ascontiguousarray(key).view("<u8")
    with np.errstate(over="ignore"):
        h = lens.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        for j in range(words.shape[1]):
            h = (h ^ words[:, j]) * np.uint64(0xBF58476D1CE4E5B9)
            h ^= h >> np.uint64(31)
    import pandas as pd
    codes, uniq = pd.factorize(h)
    first = np.zeros(uniq.size, np.int64)
    first[codes[::-1]] = np.arange(n - 1, -1, -1)  # first occurrence of each code
    rep = first[codes]
    if not ((rows[rep] == rows).all() and (lens[rep] == lens).all()):
        # A hash collision (astronomically rare): one row at a time.
        cache = {}
        for i in range(n):
            k = (rows[i].tobytes(), int(lens[i]))
            if k not in cache:
                cache[k] = convert(rows[i, :lens[i]].tobytes())
            out[i] = cache[k]
        return out
    values = np.empty(uniq.size, object)
    for c, i in enumerate(first):
        values[c] = convert(rows[i, :lens[i]].tobytes())
    return values[codes]


def _text_of(b):
    return decode_text(b.split(b"\0", 1)[0])


def _hex_of(b):
    return b.hex()


def _ints(rows, size, signed):
    """Little-endian integers of `size` bytes from the (n, size) uint8 `rows`: int64 sign-extended, or uint64."""
    if size in (1, 2, 4, 8):
        v = np.ascontiguousarray(rows).view(("<i%d" if signed else "<u%d") % size).reshape(-1)
        return v.astype(np.int64 if signed else np.uint64)
    out = np.zeros(rows.shape[0], np.uint64)
    for k in range(size):
        out |= rows[:, k].astype(np.uint64) << np.uint64(8 * k)
    if signed:
        bits = np.uint64(size * 8)
        neg = (out >> (bits - np.uint64(1))) & np.uint64(1) == 1
        out = np.where(neg, out | (~np.uint64(0) << bits), out)
        return out.view(np.int64)
    return out


def decode_columns(schema, blob, offsets, sizes):
    """{field name: (values, missing mask or None)} for the records at offsets/sizes in blob (padded by PAD
    zero bytes). Integers come as int64 (SIGNED) or uint64 (UNSIGNED); strings and bytes as object arrays
    (None where missing)."""
    n = offsets.size
    fields = list(schema.fields)
    # One gather of the fixed part (every integer and narrow array field), sliced per field below.
    width = 1
    for f in fields:
        if f.type in (SIGNED, UNSIGNED) and 1 <= f.size <= 8:
            width = max(width, f.offset + f.size)
        elif f.type in (STRING, BYTES) and f.size <= _WIDE_FIELD:
            width = max(width, f.offset + max(f.size, 1))
    shared = _gather_rows(blob, offsets, width) if width <= PAD else None

    def field_rows(offset, size):
        if shared is not None and offset + size <= width:
            return shared[:, offset:offset + size]
        return _gather_rows(blob, offsets + offset, size)

    def read_uint(f):
        if f.size == 0 or f.size > 8:
            return None, None
        return _ints(field_rows(f.offset, f.size), f.size, False), f.offset + f.size <= sizes

    out = {}
    for f in fields:
        if f.type in (SIGNED, UNSIGNED):
            if f.size == 0 or f.size > 8:
                out[f.name] = (np.full(n, None, object), np.ones(n, bool))
                continue
            vals = _ints(field_rows(f.offset, f.size), f.size, f.type == SIGNED)
            present = f.offset + f.size <= sizes
            out[f.name] = (vals, None if present.all() else ~present)
        elif f.type in (STRING, BYTES):
            present = f.offset <= sizes
            lens = np.where(present, np.minimum(np.int64(f.size), sizes - f.offset), 0)
            if f.length_field:
                for g in fields:
                    if g.name != f.length_field:
                        continue
                    used, ok = read_uint(g)
                    if used is None:
                        continue
                    capped = np.minimum(used, np.uint64(1 << 62)).astype(np.int64)
                    lens = np.where(ok, np.minimum(lens, capped), lens)
            # A list of NUL-separated strings (hint argv or path_argv) keeps its NULs, as payload_schema.cpp does.
            keeps_nuls = f.type == STRING and f.hint in ("argv", "path_argv")
            if f.size <= _WIDE_FIELD:
                w = max(int(f.size), 1)
                rows = field_rows(f.offset, w).copy()
                convert = decode_text if f.type == STRING else _hex_of
                if f.type == STRING and not keeps_nuls:
                    z = rows == 0
                    lens = np.minimum(lens, np.where(z.any(axis=1), z.argmax(axis=1), w))
                if not (lens == w).all():
                    rows[np.arange(w)[None, :] >= lens[:, None]] = 0
                vals = _dedupe_decode(rows, lens, convert)
            else:
                convert = (decode_text if keeps_nuls else _text_of) if f.type == STRING else _hex_of
                vals = np.empty(n, object)
                raw = blob.data
                starts = (offsets + f.offset).tolist()
                cache = {}
                for i, (s, k) in enumerate(zip(starts, lens.tolist())):
                    b = bytes(raw[s:s + k])
                    v = cache.get(b)
                    if v is None:
                        v = cache[b] = convert(b)
                    vals[i] = v
            if not present.all():
                vals[~present] = None
            out[f.name] = (vals, None if present.all() else ~present)
        else:
            out[f.name] = (np.full(n, None, object), np.ones(n, bool))
    return out


def raw_hex(blob, offsets, sizes):
    vals = np.empty(offsets.size, object)
    raw = blob.data
    for i, (s, k) in enumerate(zip(offsets.tolist(), sizes.tolist())):
        vals[i] = bytes(raw[s:s + k]).hex()
    return vals
