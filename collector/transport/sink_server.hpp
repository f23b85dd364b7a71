// SinkServer: `perfstream sink`: accepts many collectors at once (TCP, unix sockets, mutual TLS) and writes
// each one's stream to its own trace file in a directory, following stream_protocol.hpp.
//
// Files: one recording per collector id, kept by a RecordingStore (recording_store.hpp): each batch
// sequence is stored once; duplicates (resends after a cut connection) are acknowledged and dropped. After
// a sink restart, the first hello of an id resumes that id's files and tells the collector where to
// resume (Welcome).
//
// Isolation: every connection has its own buffers (at most max_frame compressed + max_batch decompressed),
// deadlines (hello_timeout for the first frame, idle_timeout between frames), and strand; a peer that sends
// garbage, a huge length, a zstd bomb or nothing at all is disconnected and logged, and nobody else waits
// on it. A newer connection of the same collector takes over from an older one (a half-open leftover).
//
// Memory: a frame's buffer grows as its bytes arrive (kReadChunk at a time, the capacity doubling), never
// to the length its header declares; before a hello only a hello of kMaxHelloPayload bytes is accepted.
// Compressed frames in flight, all connections together, are bounded by max_memory (a FrameBudget,
// frame_budget.hpp). After the hello, a frame's share (its length, and half again for the copies while its
// buffer grows) is taken from the budget when its header arrives, before any of it is read: a connection
// whose share is not there stops reading its socket until memory is given back, so TCP flow control holds
// its peer back. Taking the share whole means a frame once begun can always be finished; shares taken
// chunk by chunk could leave every connection holding half a frame and waiting for the others. A frame's
// share goes back once the frame is handled. A peer that stalls mid-frame keeps its share until
// idle_timeout drops it, and other collectors' frames wait meanwhile (as in Kafka).
//
// Files: a connected collector's recording file stays open; once its last connection goes, the store may
// close it (after store.files.idle_close, or at once when store.files.max_open files are open and another
// collector needs one) and reopens it where it ended when the collector is back (recording_store.hpp).
// When every open file has a live connection, a new collector's hello is refused in-band ("all N
// recording files ... have a live connection"), logged rate-limited. A peer address may bring at most
// max_collectors_per_peer distinct collector ids whose recordings are not finished (CollectorIdsPerPeer);
// a new id past it is refused in-band too, logged rate-limited. A timer sweeps idle files and expired
// recordings (store.files.expire) a few times per their shortest period.
//
// Resume scans: a hello whose recording must first be read from disk (a sink restart, or a recording
// broken by a failed write) is answered from `scan_threads` threads of their own, never the network
// threads: another collector's hello is answered meanwhile (the store scans without its own lock). A
// second hello of the same id waits for the first scan. The per-peer id check comes first, on the network
// thread: a refused id costs no scan. A reopen at a known position (a file closed while idle) needs none.
//
// Storage failures: a batch the store cannot write (the disk is full, read-only, over quota) is refused
// in-band (StreamRefusal with the reason, the batch and the errno) and the connection closed: the
// collector keeps it and comes back after its backoff; the recording is opened again from its files then.
//
// Logs: lines that repeat (a peer connecting, a hello, a refusal, a drop for one cause, an accept error)
// go through the log's rate limit, keyed by what repeats (peer address or collector id, and cause; one key
// for each sink-wide limit): the first of a key per interval is written, the rest counted in one summary
// line.
//
// Threads: run() serves on `threads` threads until stop(); summaries() from any thread.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/steady_timer.hpp>

#include <boost/asio/thread_pool.hpp>

#include "collector/format/trace_writer.hpp"
#include "collector/transport/collector_ids_per_peer.hpp"
#include "collector/transport/connection.hpp"
#include "collector/transport/endpoint.hpp"
#include "collector/transport/frame_budget.hpp"
#include "collector/transport/recording_store.hpp"
#include "collector/util/result.hpp"

namespace perfstream {

struct SinkOptions {
  std::vector<Endpoint> listen;
  RecordingStoreOptions store;  // the directory, rotation, and the log the sink writes to as well
  TlsOptions tls;
  std::uint32_t max_frame = 16u << 20;
  // Compressed frames in flight, all connections together; 0: default_frame_memory_budget(). Raised to
  // twice max_frame when smaller, so one connection alone can always finish a frame.
  std::size_t max_memory = 0;
  std::size_t max_batch = 64u << 20;
  std::chrono::milliseconds hello_timeout{10000};
  std::chrono::milliseconds idle_timeout{120000};
  // Open connections: all together, and from one peer address (TCP; unix sockets count only in the total).
  // A connection past either is closed as soon as it is accepted, and logged rate-limited (Log::limited).
  std::size_t max_connections = 1024;
  std::size_t max_connections_per_peer = 64;
  // Distinct collector ids with unfinished recordings per peer address (TCP); see the top.
  std::size_t max_collectors_per_peer = 256;
  unsigned threads = 2;
  unsigned scan_threads = 2;  // for resume scans (see above)
  bool allow_remote = false;  // bind non-loopback addresses only when told
};

struct CollectorSummary : RecordingSummary {
  bool connected = false;
};

class SinkServer {
 public:
  static Result<std::unique_ptr<SinkServer>> create(const SinkOptions& options);
  ~SinkServer();

  // The endpoints actually bound (tcp port 0 becomes the port the kernel chose).
  const std::vector<Endpoint>& bound() const { return bound_; }
  void run();   // blocks until stop()
  void start(); // runs on background threads
  void stop();
  std::vector<CollectorSummary> summaries() const;
  std::uint64_t refused_peers() const;
  // The frame memory budget: its limit, what is held now, the peak, how often a connection waited.
  FrameBudget::Stats frame_memory() const;
  // Connections open now, and those closed at accept for a connection limit.
  std::size_t open_connections() const;
  std::uint64_t connections_over_limit() const;
  // The recordings' files: open, idle, closed and reopened (RecordingStore::FileStats).
  RecordingStore::FileStats files() const;
  // Hellos refused because their peer address had max_collectors_per_peer ids already.
  std::uint64_t collectors_over_limit() const;

  // The default --max-open-files: what the fd limit `nofile` leaves after the connections and a margin for
  // the sink's own descriptors (listeners, epoll, log, TLS files), at least 16.
  static std::size_t default_max_open_files(std::uint64_t nofile, std::size_t max_connections);

  // How much of a frame a connection reads at a time, and so the most it holds beyond what it received.
  static constexpr std::size_t kReadChunk = 64u << 10;

 private:
  class Session;
  SinkServer() = default;
  void accept_tcp(std::size_t index);
  void accept_unix(std::size_t index);
  // Makes `session` the one connection of collector `id`; returns the one it replaces, if any.
  std::shared_ptr<Session> take_over(const std::string& id, const std::shared_ptr<Session>& session);
  void log(const std::string& line) const;
  void log_limited(const std::string& key, const std::string& line) const;
  void start_scans();  // makes scans_, from start() or run()
  // Takes a connection slot for `address` ("" for a unix socket), or closes the connection and logs why not
  // (rate-limited). True when admitted.
  bool admit(const std::string& address, const std::string& peer);
  void release_slot(const std::string& address);
  // Closes idle files and expires recordings (RecordingStore::sweep), every sweep_interval_.
  void arm_file_sweep();
  void sweep_files();

  SinkOptions options_;
  std::unique_ptr<FrameBudget> budget_;  // before io_: sessions give back to it as io_'s handlers go
  // Open connections, total and per TCP peer address; before io_, as the budget. A Session holds its slot
  // from accept until it closes.
  mutable std::mutex slots_mutex_;
  std::size_t open_connections_ = 0;
  std::map<std::string, std::size_t> open_per_address_;
  std::atomic<std::uint64_t> over_limit_{0};
  // Before io_ too: sessions disconnect from their recordings, and give back their ids, as they go.
  std::unique_ptr<RecordingStore> store_;
  std::unique_ptr<CollectorIdsPerPeer> collector_ids_;
  std::atomic<std::uint64_t> collectors_over_limit_{0};
  asio::io_context io_;
  std::unique_ptr<asio::steady_timer> sweep_timer_;  // on io_
  std::chrono::milliseconds sweep_interval_{0};      // 0: nothing to sweep
  std::shared_ptr<asio::ssl::context> tls_;
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> tcp_acceptors_;
  std::vector<std::unique_ptr<asio::local::stream_protocol::acceptor>> unix_acceptors_;
  std::vector<Endpoint> bound_;
  std::vector<std::thread> threads_;
  // Resume scans; made by start() or run() (threads, so not before a sink drops its privileges), stopped
  // and joined (in ~SinkServer) before io_ and store_ go.
  std::unique_ptr<asio::thread_pool> scans_;
  mutable std::mutex active_mutex_;
  std::map<std::string, std::weak_ptr<Session>> active_;  // each collector's current connection
  std::atomic<std::uint64_t> refused_{0};
  std::string sink_id_;
};

}  // namespace perfstream
