// StreamClient: the collector's end of a stream: a SpooledSender (spooled_sender.hpp: the contract it
// keeps) that sends its spool to a sink over TCP, a unix socket or mutual TLS, following stream_protocol.hpp.
//
// write_batch() only appends to the spool, so the readers never wait on the network. A batch the full
// spool refuses is replaced by an empty batch of the same sequence (no records), so the sink's cumulative
// acknowledgements move past it; the sink stores that empty batch like any other. A sender thread
// connects, says hello with the trace header, resends whatever the sink has not acknowledged, and streams
// new batches with at most `window` unacknowledged on the wire. A lost connection (or a refused one) is
// retried with exponential backoff from backoff_min to backoff_max; everything keeps spooling meanwhile. The
// backoff goes back to backoff_min only when the sink makes progress (an acknowledgement that moves, or a
// welcome with nothing left to send), not when it merely answers: a sink that welcomes us and then refuses
// every batch (its disk is full: StreamRefusal) is retried less and less often, and its reason is kept for
// the status line and the summary. While connections keep failing without progress, the connection and
// retry lines go through the log's rate limit (Log::limited), with a count of what it held back. A
// connect or handshake that hangs (SYNs unanswered, a silent peer) fails after handshake_timeout. A batch
// that cannot be read back from the spool (a failing disk) stays there and is tried again; the connection
// stays up. The destructor aborts whatever is in flight, so it returns at once.
// finish() waits until the sink has acknowledged every batch, then sends the trailer and closes.
//
// An earlier run's batches: segments that an earlier run on the same spool directory left unacknowledged
// (it was killed, or its sink never came back) are sent too, each recording's as that recording: a hello
// with its own collector id and header (from the segments), so that the sink completes that recording and
// drops what it already has (by sequence). Each has a sender of its own beside this run's, which stops
// once the sink has all of it and then deletes its files; no trailer is sent for it (its totals died with
// the earlier run). finish() waits for them too, status() counts them in the backlog, describe_progress()
// says how far they got. Until delivered, they stay in the spool directory as undelivered-*.psf.
//
// Threads: write_batch from any thread; start/finish/status from the controlling thread.
#pragma once

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "collector/transport/connection.hpp"
#include "collector/transport/endpoint.hpp"
#include "collector/transport/spool.hpp"
#include "collector/transport/spooled_sender.hpp"
#include "collector/util/log.hpp"
#include "perfstream.pb.h"

namespace perfstream {

struct StreamClientOptions {
  Endpoint endpoint;
  TlsOptions tls;
  std::string spool_dir;
  std::uint64_t spool_bytes = 1ull << 30;
  std::uint32_t window = 64;
  std::chrono::milliseconds backoff_min{100};
  std::chrono::milliseconds backoff_max{5000};
  // From the start of a connect to the sink's welcome; past it, the attempt fails and is retried.
  std::chrono::milliseconds handshake_timeout{10000};
  int trailer_compression_level = 3;  // zstd's; one it refuses makes finish() fail at once
  Log* log = nullptr;  // connection events, from the sender thread; not owned; null: nothing is logged
};

// acked_through: every batch below it is stored at the sink; pending: spooled, not acknowledged.
struct StreamClientStatus : SenderStatus {
  std::uint64_t connects = 0;
  std::uint64_t sent_batches = 0;    // including resends
  std::uint64_t attempts = 0;        // connection attempts, the first included
  std::uint64_t refusals = 0;        // in-band refusals from the sink (StreamRefusal)
  std::string last_refusal;          // the latest one's reason, kept after the sink takes batches again
};

class StreamClient : public SpooledSender {
 public:
  static Result<std::unique_ptr<StreamClient>> create(const StreamClientOptions& options, v1::TraceHeader header,
                                                      std::string collector_id);
  ~StreamClient() override;

  Status write_batch(const EncodedBatch& batch) override;
  // Never fails: the sender connects, and retries, on its own.
  Status start() override;
  // See Spool::give_to; before start().
  Status give_spool_to(uid_t uid, gid_t gid) override;
  // Waits up to `timeout` for every batch to be acknowledged, then sends the trailer: true once it is
  // written. False on timeout (the unacknowledged batches stay in the spool directory, in the trace
  // framing), or as soon as `give_up` (when given, polled every 50 ms) returns true. An error instead,
  // with its errno, when the sink was not what held the batches back: the trailer cannot be compressed
  // (at once), or a batch could not be read back from the spool (at the timeout or give_up).
  Result<bool> finish(const v1::TraceTrailer& trailer, std::chrono::milliseconds timeout,
                      const std::function<bool()>& give_up = {}) override;
  StreamClientStatus status() const;
  SenderStatus sender_status() const override { return status(); }
  std::string describe_progress() const override;

 private:
  class Sender;
  StreamClient() = default;
  // Finds the earlier runs' recordings in the spool directory and makes a sender for each (earlier_).
  void adopt_earlier_runs(const std::shared_ptr<asio::ssl::context>& tls);
  // Waits until every earlier run's batches are delivered, `deadline` passes or `give_up` says so.
  bool wait_for_earlier_runs(std::chrono::steady_clock::time_point deadline, const std::function<bool()>& give_up);

  StreamClientOptions options_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<Sender> sender_;
  std::thread thread_;
  std::string earlier_id_;  // set in a sender of an earlier run's recording: that recording's id
  std::vector<std::unique_ptr<StreamClient>> earlier_;  // one per earlier run's recording left in the spool
};

}  // namespace perfstream
