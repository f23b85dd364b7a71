// SpooledSender: what a capture needs of a sender that keeps every batch in an on-disk spool until a far end
// has it, and sends the spool there in the background: StreamClient (a perfstream sink, over a socket) and
// KafkaPublisher (a Kafka topic). The capture writes batches, starts it, checks it on each status tick,
// and finishes it; it never needs to know which one it has.
//
// Contract, for every implementation:
//   - write_batch() only appends to the spool: a reader thread never waits on the network. A batch a full
//     spool refuses is counted (refused_batches) and the far end is told of the gap in-band.
//   - give_spool_to() hands the spool directory to the user the capture becomes; before start().
//   - start() starts the background work (threads, the network client). Settings were checked by the
//     implementation's create(), so that a capture can drop privileges while it is single-threaded.
//   - finish() waits up to `timeout` until the far end has every batch, then sends the trailer: true once
//     it is there; false on timeout or as soon as `give_up` (polled every 50 ms) says to stop waiting; an
//     error, with its errno, when the far end was not what held the batches back (the trailer cannot be
//     compressed, the spool cannot be read back, the far end refuses the recording for good). Whatever
//     the far end does not have stays in the spool directory, in the trace file framing.
//   - status() is a snapshot; `error` is set once sending has stopped for good.
//
// Threads: write_batch from any thread; start, finish and the status calls from the controlling thread.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

#include "collector/format/batch_sink.hpp"
#include "collector/util/result.hpp"
#include "perfstream.pb.h"

namespace perfstream {

struct SenderStatus {
  bool connected = false;             // the far end answered since the last time it was lost
  std::uint64_t acked_through = 0;    // every batch below this one is safe at the far end
  std::uint64_t pending_batches = 0;  // spooled, not yet safe at the far end
  std::uint64_t pending_bytes = 0;
  std::uint64_t refused_batches = 0;  // the spool was full
  std::string error;                  // why sending stopped for good; empty while it goes on
  // Why the far end does not take our batches now, in its own words (a sink's in-band refusal: "cannot
  // store batch 12 in DIR/ID.data: No space left on device"); empty once it takes them again.
  std::string far_end_refuses;
};

class SpooledSender : public BatchSink {
 public:
  virtual Status start() = 0;
  virtual Status give_spool_to(uid_t uid, gid_t gid) = 0;
  virtual Result<bool> finish(const v1::TraceTrailer& trailer, std::chrono::milliseconds timeout,
                              const std::function<bool()>& give_up = {}) = 0;
  virtual SenderStatus sender_status() const = 0;
  // How far the far end has got, in words for a summary: "acknowledged through batch 12, 1 connection".
  virtual std::string describe_progress() const = 0;
};

}  // namespace perfstream
