"""The trace framing (docs/FORMAT.md, collector/format/frame.hpp): a file header, then frames, read front to
back from a file, a pipe or standard input, one frame at a time.

What this module promises, as collector/format/trace_reader.cpp does:
  - the input is read sequentially in chunks; at most one frame (<= 64 MiB compressed) and what follows it
    is held, so a pipe and a file are read the same way;
  - a frame header is checked (magic, CRC-32 of its first 12 bytes, type 1-3, encoding 1, length at most
    64 MiB) before its length is trusted; the reserved u16 and the file header's flags are not checked
    (the C++ reader ignores them too);
  - the zstd frame's declared content size is checked against the limit BEFORE anything is decompressed;
    a frame that declares no size, has bytes after it, or fails its checksum is corrupt;
  - a damaged input raises: TruncatedError when the input ends inside a frame (every frame before it was
    handed out), CorruptFrameError for a frame that does not check out. Both name the input and the byte
    offset of the frame. A frame header whose length runs past the end of the input is corrupt when a valid
    frame starts later, else the input is cut short (as in C++).
"""
import struct
import zlib

import zstandard

FILE_MAGIC = b"PERFSTRM"
FORMAT_VERSION = 3         # the newest version this reader reads (3: time deltas as byte planes)
OLDEST_FORMAT_VERSION = 1  # version 1: batches without column groups (2 adds them); batch.py reads all three
FILE_HEADER_SIZE = 16
FRAME_MAGIC = b"PSFR"
FRAME_HEADER_SIZE = 16
ENCODING_ZSTD = 1
MAX_FRAME_PAYLOAD = 64 << 20   # kMaxFramePayload: largest compressed payload a reader accepts
MAX_MESSAGE_BYTES = 64 << 20   # ReaderLimits/--max-batch-bytes: largest decompressed message

HEADER, BATCH, TRAILER = 1, 2, 3

_READ_CHUNK = 1 << 20
_ZSTD_MAGIC = 0xFD2FB528


class RecordingError(Exception):
    """A recording that cannot be read as it should: names the input and, when known, the byte offset."""

    def __init__(self, path, offset, message):
        self.path = path
        self.offset = offset
        self.reason = message
        where = path if offset is None else "%s: byte %d" % (path, offset)
        super().__init__("%s: %s" % (where, message))


class TruncatedError(RecordingError):
    """The input ends inside a frame (a crash, kill -9, a full disk): the frames before it were complete."""


class CorruptFrameError(RecordingError):
    """A frame that does not check out: bad magic or CRC, a zstd or protobuf error, columns that disagree."""


class NotATraceError(RecordingError):
    """The input is not a perfstream trace (no PERFSTRM header, another version, no trace header)."""


def _frame_header_problem(b):
    """None when the 16 bytes are a valid frame header of a file, else why not (frame.cpp's checks)."""
    if b[:4] != FRAME_MAGIC:
        return "no frame magic"
    if zlib.crc32(b[:12]) != struct.unpack_from("<I", b, 12)[0]:
        return "frame header checksum mismatch"
    ftype, encoding = b[4], b[5]
    if ftype not in (HEADER, BATCH, TRAILER):
        return "unknown frame type %d" % ftype
    if encoding != ENCODING_ZSTD:
        return "frame type %d with unknown encoding %d" % (ftype, encoding)
    length = struct.unpack_from("<I", b, 8)[0]
    if length > MAX_FRAME_PAYLOAD:
        return "frame length %d over the limit of %d" % (length, MAX_FRAME_PAYLOAD)
    return None


def zstd_frame_size(data):
    """Bytes of the zstd frame at the start of `data` (as ZSTD_findFrameCompressedSize), or raises ValueError."""
    if len(data) < 4 or struct.unpack_from("<I", data, 0)[0] != _ZSTD_MAGIC:
        raise ValueError("not a zstd frame")
    try:
        at = zstandard.frame_header_size(data)
        params = zstandard.get_frame_parameters(data)
    except zstandard.ZstdError as e:
        raise ValueError(str(e))
    while True:
        if at + 3 > len(data):
            raise ValueError("Src size is incorrect")
        bh = data[at] | data[at + 1] << 8 | data[at + 2] << 16
        last, btype, bsize = bh & 1, (bh >> 1) & 3, bh >> 3
        at += 3
        if btype == 3:
            raise ValueError("Corrupted block detected")
        at += 1 if btype == 1 else bsize
        if at > len(data):
            raise ValueError("Src size is incorrect")
        if last:
            break
    if params.has_checksum:
        at += 4
        if at > len(data):
            raise ValueError("Src size is incorrect")
    return at


class FrameReader:
    """Frames of one trace input. `source` is a path, "-" (standard input) or a binary file object."""

    def __init__(self, source, name=None, max_message_bytes=MAX_MESSAGE_BYTES):
        import sys
        self.max_message_bytes = max_message_bytes
        if isinstance(source, (str, bytes)) or hasattr(source, "__fspath__"):
            if source == "-":
                self._file, self._owned = sys.stdin.buffer, False
                self.path = name or "standard input"
            else:
                self._file, self._owned = open(source, "rb", buffering=0), True
                self.path = name or str(source)
        else:
            self._file, self._owned = source, False
            self.path = name or getattr(source, "name", "<stream>")
        self._buf = bytearray()
        self._start = 0      # input offset of _buf[0]
        self._eof = False
        self._dctx = zstandard.ZstdDecompressor()
        self.offset = 0
        self._stopped = False
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def close(self):
        if self._owned and self._file is not None:
            self._file.close()
        self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _fill(self, at, n):
        """Makes input bytes [at, at+n) available; False when the input ends first."""
        drop = at - self._start
        if drop >= _READ_CHUNK:
            del self._buf[:drop]
            self._start = at
        while self._start + len(self._buf) < at + n:
            if self._eof:
                return False
            chunk = self._file.read(max(_READ_CHUNK, at + n - self._start - len(self._buf)))
            if not chunk:
                self._eof = True
                return False
            self._buf += chunk
        return True

    def _bytes(self, at, n):
        i = at - self._start
        return bytes(self._buf[i:i + n])

    def _end(self):
        return self._start + len(self._buf)

    def _open(self):
        if not self._fill(0, FILE_HEADER_SIZE):
            raise NotATraceError(self.path, None, "not a perfstream trace (shorter than the 16-byte file header)")
        head = self._bytes(0, FILE_HEADER_SIZE)
        if head[:8] != FILE_MAGIC:
            raise NotATraceError(self.path, None, "not a perfstream trace (no PERFSTRM magic at the start)")
        version = struct.unpack_from("<I", head, 8)[0]
        if not OLDEST_FORMAT_VERSION <= version <= FORMAT_VERSION:
            raise NotATraceError(self.path, None, "format version %d; this reader reads versions %d to %d"
                                 % (version, OLDEST_FORMAT_VERSION, FORMAT_VERSION))
        self.offset = FILE_HEADER_SIZE
        try:
            frame = self.next()
        except RecordingError as e:
            raise NotATraceError(self.path, FILE_HEADER_SIZE, "the trace header is unreadable: " + e.reason)
        if frame is None or frame[0] != HEADER:
            raise NotATraceError(self.path, FILE_HEADER_SIZE, "the trace header (first frame) is missing")
        self.header_message = frame[2]

    def _find_frame(self, start):
        """Offset of the next valid frame header at or after `start` whose frame fits in the input, or None."""
        at = start
        while self._fill(at, FRAME_HEADER_SIZE):
            i = self._buf.find(FRAME_MAGIC, at - self._start)
            if i < 0:
                at = max(at, self._end() - FRAME_HEADER_SIZE + 1)
                if not self._fill(at, FRAME_HEADER_SIZE + 1):
                    return None
                continue
            candidate = self._start + i
            if not self._fill(candidate, FRAME_HEADER_SIZE):
                return None
            head = self._bytes(candidate, FRAME_HEADER_SIZE)
            if _frame_header_problem(head) is None:
                length = struct.unpack_from("<I", head, 8)[0]
                if self._fill(candidate, FRAME_HEADER_SIZE + length):
                    return candidate
            at = candidate + 1
        return None

    def next(self):
        """(type, offset, message bytes) of the next frame, or None at the end of the input."""
        if self._stopped:
            return None
        at = self.offset
        if not self._fill(at, FRAME_HEADER_SIZE):
            left = self._end() - at
            if left <= 0:
                return None
            self._stopped = True
            raise TruncatedError(self.path, at, "the input ends %d bytes into a frame header" % left)
        head = self._bytes(at, FRAME_HEADER_SIZE)
        problem = _frame_header_problem(head)
        if problem is not None:
            self._stopped = True
            raise CorruptFrameError(self.path, at, "corrupt frame: " + problem)
        ftype = head[4]
        length = struct.unpack_from("<I", head, 8)[0]
        size = FRAME_HEADER_SIZE + length
        if not self._fill(at, size):
            left = self._end() - at
            self._stopped = True
            after = self._find_frame(at + 1)
            if after is not None:
                raise CorruptFrameError(self.path, at, "corrupt frame: its header declares %d bytes, past the end "
                                        "of the input (%d are left), yet a valid frame starts at byte %d"
                                        % (size, left, after))
            raise TruncatedError(self.path, at, "the input is cut short: the frame needs %d bytes, %d are left"
                                 % (size, left))
        payload = self._bytes(at + FRAME_HEADER_SIZE, length)
        try:
            self._check_zstd(payload)
            message = self._dctx.decompress(payload)
        except (ValueError, zstandard.ZstdError) as e:
            self._stopped = True
            raise CorruptFrameError(self.path, at, "corrupt frame: zstd frame: %s" % e)
        self.offset = at + size
        return ftype, at, message

    def _check_zstd(self, payload):
        """Refuses, before decompressing, a frame that declares no size or more than the limit."""
        try:
            content = zstandard.frame_content_size(payload)
        except zstandard.ZstdError:
            raise ValueError("not a zstd frame")
        if content == zstandard.CONTENTSIZE_ERROR:
            raise ValueError("not a zstd frame")
        if content == zstandard.CONTENTSIZE_UNKNOWN or content < 0:
            raise ValueError("it does not declare its decompressed size")
        if content > self.max_message_bytes:
            raise ValueError("declares %d decompressed bytes, over the reader's limit of %d"
                             % (content, self.max_message_bytes))
        used = zstd_frame_size(payload)
        if used != len(payload):
            raise ValueError("%d bytes follow the frame" % (len(payload) - used))
