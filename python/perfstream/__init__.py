"""perfstream: read perfstream recordings (docs/FORMAT.md) into pandas DataFrames.

    import perfstream
    rec = perfstream.read("perfstream.data")     # FILE.1, FILE.2, ... follow; "-" is standard input
    rec.header                                   # the TraceHeader (protobuf message) of the first piece
    df = rec["sched_switch"]                     # one DataFrame per event type: time_ns, cpu, every field
    rec.lost                                     # lost notices: time_ns, cpu, lost, source, ...

The DataFrames hold the values `perfstream dump --json --raw-fields` prints, as recorded (display hints
such as O_RDONLY or ENOENT are in rec.header's schemas, Field.hint, and are not applied), in dump's order:
their index ("seq") is each record's place in the recording's time order, shared with rec.lost, so
pandas.concat([*rec.events.values(), rec.lost]).sort_index() lists everything as dump does.
"""
from .batch import Batch, BatchError, LostNotice
from .frames import CorruptFrameError, NotATraceError, RecordingError, TruncatedError
from .reader import BatchStream, Piece, Recording, batches, read

__all__ = ["read", "batches", "Recording", "BatchStream", "Batch", "LostNotice", "Piece", "RecordingError",
           "CorruptFrameError", "TruncatedError", "NotATraceError", "BatchError"]
