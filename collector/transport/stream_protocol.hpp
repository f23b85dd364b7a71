// The stream protocol between `perfstream stream` (the collector) and `perfstream sink`.
//
// Both directions carry frames in the trace framing (collector/format/frame.hpp), read in the Stream
// context: the data frames of a trace file (1 TraceHeader is not sent on its own, 2 Batch, 3 TraceTrailer),
// zstd-encoded exactly as in a file, and control frames whose payload is an unencoded protobuf message
// (proto/perfstream.proto): 16 StreamHello, 17 StreamWelcome, 18 StreamAck, 19 StreamRefusal.
//
//   collector                              sink
//   Hello{id, TraceHeader}        ->
//                                 <-       Welcome{next_sequence}  (or Refusal, then close)
//   Batch, Batch, ...             ->
//                                 <-       Ack{through}            (after the batches are written)
//   Trailer                       ->                               (the recording ended; file closed)
//
// Refusal{reason, batch_sequence, errnum}, then close: the sink will not take the hello (a version it does
// not speak, a file it cannot create) or cannot store a batch (ENOSPC, EROFS, EDQUOT: its disk, not the
// peer's fault). The collector keeps what was not acknowledged and tries again after its backoff, which
// only an acknowledgement resets; the reason is for the collector's user. Added to protocol 1 without a
// bump: a collector that reads only `reason` reconnects and resends, as it always did after a refusal.
//
// The collector keeps every batch in its spool until an Ack covers it, and after a reconnect resends what
// is not covered; the sink stores each batch sequence once and drops duplicates, so every batch is stored
// exactly once. Acks are cumulative: `through` is the lowest sequence not yet stored.
// Limits the sink enforces: a frame header must arrive within the idle timeout, a payload may not exceed
// max_frame, a batch may not decompress past max_batch (no zstd bombs), and frames must come in the order
// above; a peer that breaks any of them is disconnected, and nobody else notices. Before its hello is
// accepted a peer may send only the hello, of at most kMaxHelloPayload bytes: what a peer can make the sink
// hold before it has said who it is stays small. The sink holds a frame's bytes as they arrive, never what
// a header declares.
#pragma once

#include <cstdint>
#include <string>

#include "collector/format/frame.hpp"
#include "perfstream.pb.h"

namespace perfstream {

constexpr std::uint32_t kStreamProtocolVersion = 1;
// The largest hello a sink accepts. A hello is the collector id and the TraceHeader (host, CPUs, probes,
// each event's schema, the recorded command): 1-3 KB with the built-in probes; 64 KiB leaves room for a
// large BPF object's schemas and a long command line.
constexpr std::uint32_t kMaxHelloPayload = 64u << 10;

// Header + unencoded payload of a control message.
std::string encode_control_frame(FrameType type, const google::protobuf::MessageLite& message);
// The 16-byte header of a zstd data frame of `payload_length` bytes (the payload is sent after it).
std::string data_frame_header(FrameType type, std::size_t payload_length);

}  // namespace perfstream
