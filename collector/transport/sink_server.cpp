#include "collector/transport/sink_server.hpp"

#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <algorithm>
#include <cerrno>
#include <deque>
#include <optional>
#include <utility>

#include "collector/format/trace_reader.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/transport/stream_protocol.hpp"

namespace perfstream {


class SinkServer::Session : public std::enable_shared_from_this<Session> {
 public:
  // `address`: the peer's slot, taken by admit() and given back when this session closes.
  Session(SinkServer& server, std::unique_ptr<Connection> conn, asio::any_io_executor executor, std::string address)
      : server_(server),
        conn_(std::move(conn)),
        timer_(executor),
        decompressor_(*ZstdDecompressor::create()),
        address_(std::move(address)) {}

  void start() {
    server_.log_limited("connected " + address_, "peer " + conn_->peer() + " connected");
    arm_deadline(server_.options_.hello_timeout, "no hello");
    if (conn_->is_tls()) {
      auto self = shared_from_this();
      conn_->tls()->async_handshake(asio::ssl::stream_base::server, [self](const boost::system::error_code& ec) {
        if (ec) return self->drop("TLS handshake failed: " + ec.message());
        self->read_header();
      });
      return;
    }
    read_header();
  }

  // Only a session that never closed, destroyed with the server's io_context, still holds memory here.
  ~Session() {
    server_.budget_->give_back(std::exchange(reserved_, 0), false);
    release_slot();
    release_recording();
  }

  void close_quietly() {
    closed_ = true;
    timer_.cancel();
    conn_->close();
    release_payload();
    release_slot();
    release_recording();
  }

 private:
  void arm_deadline(std::chrono::milliseconds limit, const std::string& what) {
    timer_.expires_after(limit);
    auto self = shared_from_this();
    timer_.async_wait([self, what, limit](const boost::system::error_code& ec) {
      if (!ec) self->drop(what + " within " + std::to_string(limit.count()) + " ms");
    });
  }

  void read_header() {
    release_payload();
    auto self = shared_from_this();
    conn_->async_read(asio::buffer(header_), [self](const boost::system::error_code& ec, std::size_t) {
      if (self->closed_) return;
      if (ec) {
        // Over TLS, a peer that just closes its socket (ours do: see Connection::close) ends the stream
        // without a close_notify: stream_truncated, and no more an error than a TCP end of stream.
        if (ec == asio::error::eof || ec == asio::ssl::error::stream_truncated) {
          return self->drop(self->collector_ ? "left" : "closed before saying hello", false);
        }
        return self->drop("reading: " + ec.message());
      }
      std::string why;
      auto h = parse_frame_header(std::span<const char>(self->header_.data(), self->header_.size()), &why,
                                  FrameContext::Stream, self->server_.options_.max_frame);
      if (!h) return self->drop("bad frame at byte " + std::to_string(self->offset_) + ": " + why);
      if (!self->collector_) {
        if (h->type != FrameType::Hello) return self->drop("the first frame is not a hello");
        if (h->payload_length > kMaxHelloPayload) {
          return self->drop("a hello of " + std::to_string(h->payload_length) + " bytes, over the limit of " +
                            std::to_string(kMaxHelloPayload));
        }
      }
      self->frame_type_ = h->type;
      self->frame_length_ = h->payload_length;
      self->reserve_and_read();
    });
  }

  // What a frame of `length` bytes takes from the budget: its buffer, and while the buffer grows, the old
  // one too for the moment of the copy (at most half the frame: see grow_to).
  static std::size_t budget_for(std::size_t length) {
    return length <= kReadChunk ? length : length + (length + 1) / 2;
  }

  // Takes the frame's share of the budget before reading any of it, or, after the hello, waits for it
  // without reading (back-pressure); a hello never waits (take_anyway). Taken whole, so that a frame once
  // begun can always be finished: buffers that each hold part of a frame never wait on one another.
  void reserve_and_read() {
    if (closed_) return;
    const std::size_t need = budget_for(frame_length_);
    if (!collector_) {
      server_.budget_->take_anyway(need);
    } else {
      auto self = shared_from_this();
      auto wake = [self] { asio::post(self->conn_executor(), [self] { self->reserve_and_read(); }); };
      if (!server_.budget_->take_or_wait(need, std::move(wake))) return;
    }
    reserved_ = need;
    read_payload();
  }

  // Reads the payload as it arrives, the buffer growing at most a chunk ahead of what was received.
  void read_payload() {
    if (payload_.size() == frame_length_) {
      offset_ += kFrameHeaderSize + payload_.size();
      return on_frame(frame_type_);
    }
    const std::size_t at = payload_.size();
    const std::size_t want = std::min<std::size_t>(frame_length_, at + kReadChunk);
    if (want > payload_.capacity()) grow_to(want);
    payload_.resize(want);  // within the capacity: no allocation
    auto self = shared_from_this();
    conn_->async_read_some(asio::buffer(payload_.data() + at, want - at),
                           [self, at](const boost::system::error_code& ec, std::size_t n) {
                             if (self->closed_) return;
                             self->payload_.resize(at + n);
                             if (ec) return self->drop("reading a frame: " + ec.message());
                             self->read_payload();
                           });
  }

  // Gives the buffer the capacity for `want` bytes: the smallest of frame_length_ halved k times (rounding
  // up) that holds them. The sizes a buffer goes through are then ..., L/4, L/2, L: the copy from the old
  // buffer to the new never holds more than 1.5 L, what budget_for took.
  void grow_to(std::size_t want) {
    std::size_t target = frame_length_;
    while (target > want && (target + 1) / 2 >= want) target = (target + 1) / 2;
    std::string grown;
    grown.reserve(target);  // from empty: libstdc++ allocates exactly `target` (above its small-string size)
    grown.append(payload_);
    payload_.swap(grown);
  }

  void release_slot() {
    if (std::exchange(slot_held_, false)) server_.release_slot(address_);
  }

  // Frees the frame's buffer and gives its share back to the budget.
  void release_payload() {
    std::string().swap(payload_);
    server_.budget_->give_back(std::exchange(reserved_, 0));
  }

  void on_frame(FrameType type) {
    if (!collector_) {
      if (type != FrameType::Hello) return drop("the first frame is not a hello");
      v1::StreamHello hello;
      if (!hello.ParseFromString(payload_)) return drop("the hello does not decode");
      if (hello.protocol_version() != kStreamProtocolVersion) {
        return refuse("protocol version " + std::to_string(hello.protocol_version()) + "; this sink speaks " +
                      std::to_string(kStreamProtocolVersion));
      }
      if (const std::uint32_t format = file_format_version(hello.header().format_version());
          !readable_format_version(format)) {
        return refuse("trace format version " + std::to_string(format) + "; this sink reads versions " +
                      std::to_string(kOldestFormatVersion) + " to " + std::to_string(kFormatVersion));
      }
      if (hello.collector_id().empty()) return refuse("the hello has no collector id");
      const auto admission = admit_collector(hello.collector_id());
      if (!admission) return;
      if (server_.store_->needs_scan(hello.collector_id())) {
        // Its files are read first, which may take long: on the scan threads, so that no other collector's
        // hello waits for it. Nothing more is read from this peer until its welcome.
        arm_deadline(server_.options_.idle_timeout, "no frame");
        release_payload();
        auto self = shared_from_this();
        asio::post(*server_.scans_, [self, hello = std::move(hello), admission = *admission] {
          auto recording = self->server_.store_->connect(hello.collector_id(), hello.header());
          asio::post(self->conn_executor(), [self, admission, recording = std::move(recording)]() mutable {
            if (self->closed_) return self->unused_recording(admission, recording);
            self->welcome(admission, std::move(recording));
          });
        });
        return;
      }
      return welcome(*admission, server_.store_->connect(hello.collector_id(), hello.header()));
    } else if (type == FrameType::Batch) {
      if (auto stored = store_batch(); !stored) {
        return drop(stored.error().message());
      } else if (!*stored) {
        return;  // refused in-band: the connection closes once the refusal is written
      }
    } else if (type == FrameType::Trailer) {
      std::string message;
      v1::TraceTrailer trailer;
      if (!decompressor_.decompress(payload_, 1 << 20, message) || !trailer.ParseFromString(message)) {
        return drop("the trailer does not decode");
      }
      if (auto st = server_.store_->finish(collector_, trailer); !st) {
        return drop("closing the recording: " + st.error().message());
      }
      server_.collector_ids_->release(collector_->id());
      const auto summary = collector_->summary();
      server_.log("collector " + summary.id + " finished: " + summary.describe());
    } else {
      return drop("unexpected frame type " + std::to_string(static_cast<int>(type)));
    }
    arm_deadline(server_.options_.idle_timeout, "no frame");
    read_header();
  }

  // The hello's answer, once the collector's recording is open: a welcome, or a refusal that says why.
  // `admission`: what admit_collector() said of its id. The recording is connected (its file open until
  // this session goes, release_recording()), or refused: the file cap is reached with every file in use,
  // the recording expired, or its file cannot be opened.
  void welcome(CollectorIdsPerPeer::Admission admission, Result<std::shared_ptr<Recording>> recording) {
    if (!recording) {
      // A collector refused here keeps no place of its address's.
      if (admission == CollectorIdsPerPeer::Admission::Charged) {
        server_.collector_ids_->release(recording_id_);
      }
      const int err = recording.error().errnum();
      return refuse(recording.error().message(), 0, err,
                    err == EMFILE ? "sink open-file limit" : err == ETIMEDOUT ? "sink expired" : "");
    }
    collector_ = *recording;
    connected_ = true;
    if (collector_->summary().finished) server_.collector_ids_->release(collector_->id());  // holds nothing open
    if (auto old = server_.take_over(collector_->id(), shared_from_this())) {
      asio::post(old->conn_executor(), [old] { old->close_quietly(); });
    }
    v1::StreamWelcome welcome;
    welcome.set_next_sequence(collector_->next_sequence());
    welcome.set_protocol_version(kStreamProtocolVersion);
    welcome.set_sink_id(server_.sink_id_);
    const auto summary = collector_->summary();
    server_.log_limited("hello " + summary.id,
                        "peer " + conn_->peer() + " is collector " + summary.id + " (host " + summary.host +
                            "), writing " + summary.file + ", resuming at batch " +
                            std::to_string(welcome.next_sequence()));
    send(encode_control_frame(FrameType::Welcome, welcome));
    arm_deadline(server_.options_.idle_timeout, "no frame");
    read_header();
  }

  // True: stored (or a duplicate) and acknowledged. False: the sink cannot store it (its disk), and the
  // collector was told so in-band. An error: the peer sent something broken.
  Result<bool> store_batch() {
    if (auto st = decompressor_.decompress(payload_, server_.options_.max_batch, message_); !st) {
      return Error("batch at byte " + std::to_string(offset_ - payload_.size() - kFrameHeaderSize) + ": " +
                   st.error().message());
    }
    auto view = BatchView::parse(message_);
    if (!view) return view.error();
    auto stored = collector_->store(payload_, view->batch());
    if (!stored) {
      // Our disk, not the peer: say why, in-band, and let the collector keep the batch and come back.
      refuse(stored.error().message(), view->batch().sequence(), stored.error().errnum());
      return false;
    }
    if (*stored == Recording::Stored::Duplicate) ++duplicates_;
    v1::StreamAck ack;
    ack.set_through(collector_->next_sequence());
    ack.set_duplicates(duplicates_);
    send(encode_control_frame(FrameType::Ack, ack));
    return true;
  }

  // Charges the hello's collector id to the peer's address (CollectorIdsPerPeer), or refuses it: the
  // address brought too many collector ids with unfinished recordings. Nullopt when refused.
  std::optional<CollectorIdsPerPeer::Admission> admit_collector(const std::string& id) {
    recording_id_ = id;
    const auto admission = server_.collector_ids_->admit(address_, id);
    if (admission == CollectorIdsPerPeer::Admission::Refused) {
      ++server_.collectors_over_limit_;
      refuse("collector " + id + ": " + address_ + " has " + std::to_string(server_.collector_ids_->cap()) +
                 " collectors with unfinished recordings on this sink (--max-collectors-per-peer " +
                 std::to_string(server_.collector_ids_->cap()) + ")",
             0, 0, "sink per-peer collector limit");
      return std::nullopt;
    }
    return admission;
  }

  // A scan's connect() that came back after this session closed: undone.
  void unused_recording(CollectorIdsPerPeer::Admission admission, const Result<std::shared_ptr<Recording>>& recording) {
    if (recording) {
      server_.store_->disconnect(recording.value());
    } else if (admission == CollectorIdsPerPeer::Admission::Charged) {
      server_.collector_ids_->release(recording_id_);
    }
  }

  void release_recording() {
    if (std::exchange(connected_, false)) server_.store_->disconnect(collector_);
  }

  // Tells the peer why, then closes once that is written; nothing more is read from it. `log_key`: the
  // line is rate-limited under that key (Log::limited) and the leaving is not logged, for refusals that
  // many peers repeat (a limit); without one, it is rate-limited per collector (or address) and reason.
  void refuse(const std::string& reason, std::uint64_t batch_sequence = 0, int errnum = 0,
              const std::string& log_key = "") {
    v1::StreamRefusal refusal;
    refusal.set_reason(reason);
    refusal.set_batch_sequence(batch_sequence);
    refusal.set_errnum(errnum);
    ++server_.refused_;
    const std::string line = "peer " + conn_->peer() + (collector_ ? " (collector " + collector_->id() + ")" : "") +
                             " refused: " + reason;
    if (!log_key.empty() && server_.options_.store.log) {
      server_.log_limited(log_key, line);
      quiet_close_ = true;  // its refusal line is rate-limited by a shared key: its leaving says nothing
    } else {
      // The same refusal, again and again (a full disk), is one line per interval and a count.
      server_.log_limited("refused " + (collector_ ? collector_->id() : address_) + " " + reason, line);
    }
    closing_after_write_ = true;
    send(encode_control_frame(FrameType::Refusal, refusal));
  }

  // Acks and the welcome go out one at a time, in order; a peer that does not read them cannot make the
  // queue grow without bound: past 1024 queued frames it is dropped.
  void send(std::string frame) {
    if (outbox_.size() > 1024) return drop("does not read its acknowledgements");
    outbox_.push_back(std::move(frame));
    if (outbox_.size() == 1) write_next();
  }

  void write_next() {
    auto self = shared_from_this();
    conn_->async_write(asio::buffer(outbox_.front()), [self](const boost::system::error_code& ec, std::size_t) {
      if (self->closed_) return;
      if (ec) return self->drop("writing: " + ec.message());
      self->outbox_.pop_front();
      if (!self->outbox_.empty()) return self->write_next();
      if (self->closing_after_write_) self->drop("refused", false);
    });
  }

  void drop(const std::string& why, bool is_error = true) {
    if (closed_) return;
    closed_ = true;
    timer_.cancel();
    conn_->close();
    release_payload();
    release_slot();
    release_recording();
    if (quiet_close_ && !is_error) return;
    std::string who = "peer " + conn_->peer() + (collector_ ? " (collector " + collector_->id() + ")" : "");
    // Repeated causes from one address (or one collector) are one line per interval and a count.
    server_.log_limited("dropped " + (collector_ ? "collector " + collector_->id() : address_) + " " + why,
                        who + (is_error ? ": " + why + "; disconnected" : ": " + why));
  }

  asio::any_io_executor conn_executor() { return timer_.get_executor(); }

  SinkServer& server_;
  std::unique_ptr<Connection> conn_;
  asio::steady_timer timer_;
  ZstdDecompressor decompressor_;
  std::array<char, kFrameHeaderSize> header_{};
  std::string payload_;       // the frame's bytes received so far
  std::size_t reserved_ = 0;  // taken from the budget for this frame (budget_for)
  FrameType frame_type_ = FrameType::Batch;
  std::size_t frame_length_ = 0;  // what the frame's header declares
  std::string message_;
  std::deque<std::string> outbox_;
  std::shared_ptr<Recording> collector_;
  std::uint64_t offset_ = 0;
  std::uint64_t duplicates_ = 0;
  bool closed_ = false;
  bool closing_after_write_ = false;
  bool quiet_close_ = false;  // refused with a rate-limited line: the closing is not logged
  const std::string address_;
  bool slot_held_ = true;
  bool connected_ = false;  // to collector_, by store_->connect(); until release_recording()
  std::string recording_id_;  // the hello's collector id, once admit_collector() saw it
};

Result<std::unique_ptr<SinkServer>> SinkServer::create(const SinkOptions& options) {
  std::unique_ptr<SinkServer> server(new SinkServer());
  server->options_ = options;
  std::size_t& budget = server->options_.max_memory;
  if (budget == 0) budget = default_frame_memory_budget();
  budget = std::max<std::size_t>(budget, 2 * std::size_t{options.max_frame});
  server->budget_ = std::make_unique<FrameBudget>(budget);
  if (options.listen.empty()) return Error("sink: nothing to listen on (--listen tcp://127.0.0.1:PORT or unix:/PATH)");
  auto store = RecordingStore::open(options.store);
  if (!store) return store.error();
  server->store_ = std::move(*store);
  server->collector_ids_ = std::make_unique<CollectorIdsPerPeer>(options.max_collectors_per_peer);
  server->sweep_timer_ = std::make_unique<asio::steady_timer>(server->io_);
  // A few sweeps per the shortest period, so a file closes within a quarter of its idle time late.
  const auto& files = options.store.files;
  std::chrono::milliseconds shortest{0};
  for (auto period : {files.idle_close, files.expire}) {
    if (period.count() > 0 && (shortest.count() == 0 || period < shortest)) shortest = period;
  }
  if (shortest.count() > 0) {
    server->sweep_interval_ = std::clamp<std::chrono::milliseconds>(shortest / 4, std::chrono::milliseconds(20),
                                                                    std::chrono::milliseconds(5000));
  }
  if (options.tls.enabled()) {
    auto ctx = make_tls_context(options.tls, true);
    if (!ctx) return ctx.error();
    server->tls_ = *ctx;
  }
  char host[256] = {};
  gethostname(host, sizeof(host) - 1);
  server->sink_id_ = std::string(host) + ":" + std::to_string(getpid());
  for (const auto& ep : options.listen) {
    boost::system::error_code ec;
    if (ep.kind == Endpoint::Kind::Tcp) {
      if (!ep.is_loopback() && !options.allow_remote) {
        return Error("sink: " + ep.to_string() + " is not a loopback address; pass --allow-remote to accept other " +
                     "machines (and consider --tls-*)");
      }
      auto address = asio::ip::make_address(ep.host == "localhost" ? "127.0.0.1" : ep.host, ec);
      if (ec) return Error("sink: " + ep.to_string() + ": not an IP address: " + ec.message());
      auto acceptor = std::make_unique<asio::ip::tcp::acceptor>(server->io_);
      asio::ip::tcp::endpoint endpoint(address, ep.port);
      acceptor->open(endpoint.protocol(), ec);
      if (!ec) acceptor->set_option(asio::socket_base::reuse_address(true), ec);
      if (!ec) acceptor->bind(endpoint, ec);
      if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) return Error("sink: listening on " + ep.to_string() + ": " + ec.message());
      Endpoint actual = ep;
      actual.port = acceptor->local_endpoint().port();
      server->bound_.push_back(actual);
      server->tcp_acceptors_.push_back(std::move(acceptor));
    } else {
      if (server->tls_) return Error("sink: TLS is for tcp:// endpoints, not " + ep.to_string());
      ::unlink(ep.path.c_str());
      auto acceptor = std::make_unique<asio::local::stream_protocol::acceptor>(server->io_);
      asio::local::stream_protocol::endpoint endpoint(ep.path);
      acceptor->open(endpoint.protocol(), ec);
      if (!ec) acceptor->bind(endpoint, ec);
      if (!ec) acceptor->listen(asio::socket_base::max_listen_connections, ec);
      if (ec) return Error("sink: listening on " + ep.to_string() + ": " + ec.message());
      server->bound_.push_back(ep);
      server->unix_acceptors_.push_back(std::move(acceptor));
    }
  }
  for (std::size_t i = 0; i < server->tcp_acceptors_.size(); ++i) server->accept_tcp(i);
  for (std::size_t i = 0; i < server->unix_acceptors_.size(); ++i) server->accept_unix(i);
  server->arm_file_sweep();
  return server;
}

SinkServer::~SinkServer() {
  stop();
  // Scans still queued hold their sessions, whose sockets belong to io_: they go first. A scan running
  // now finishes (its welcome is posted to io_, and destroyed with it).
  if (scans_) {  // null until start() or run()
    scans_->stop();
    scans_->join();
    scans_.reset();
  }
  // Waiting sessions are owned by their wake-ups: they go now, while io_ (their sockets' and timers') lives.
  budget_->cancel_waiting();
  // The store leaves unfinished recordings resumable when it goes.
}

void SinkServer::accept_tcp(std::size_t index) {
  tcp_acceptors_[index]->async_accept(asio::make_strand(io_), [this, index](const boost::system::error_code& ec,
                                                                           asio::ip::tcp::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      boost::system::error_code pec;
      auto remote = socket.remote_endpoint(pec);
      const std::string address = pec ? "?" : remote.address().to_string();
      const std::string peer = pec ? "?" : address + ":" + std::to_string(remote.port());
      if (!admit(address, peer)) {
        socket.close(pec);
        return accept_tcp(index);
      }
      auto executor = socket.get_executor();
      std::unique_ptr<Connection> conn;
      if (tls_) {
        conn = std::make_unique<Connection>(std::make_unique<Connection::Tls>(std::move(socket), *tls_), peer);
      } else {
        conn = std::make_unique<Connection>(std::move(socket), peer);
      }
      std::make_shared<Session>(*this, std::move(conn), executor, address)->start();
    } else {
      log_limited("accept " + bound_[index].to_string() + " " + ec.message(),
                  "accepting on " + bound_[index].to_string() + ": " + ec.message());
    }
    accept_tcp(index);
  });
}

void SinkServer::accept_unix(std::size_t index) {
  unix_acceptors_[index]->async_accept(asio::make_strand(io_), [this, index](const boost::system::error_code& ec,
                                                                            asio::local::stream_protocol::socket socket) {
    if (ec == asio::error::operation_aborted) return;
    if (!ec) {
      auto executor = socket.get_executor();
      static std::atomic<std::uint64_t> counter{0};
      const std::string peer = "unix#" + std::to_string(++counter);
      if (!admit("", peer)) {
        boost::system::error_code ignored;
        socket.close(ignored);
        return accept_unix(index);
      }
      std::make_shared<Session>(*this, std::make_unique<Connection>(std::move(socket), peer), executor, "")->start();
    }
    accept_unix(index);
  });
}

std::shared_ptr<SinkServer::Session> SinkServer::take_over(const std::string& id,
                                                           const std::shared_ptr<Session>& session) {
  std::lock_guard<std::mutex> lock(active_mutex_);
  auto& slot = active_[id];
  auto old = slot.lock();
  slot = session;
  return old.get() == session.get() ? nullptr : old;
}

// Not in create(): a sink drops its privileges between create() and serving, which must happen while it
// has one thread.
void SinkServer::start_scans() {
  if (!scans_) scans_ = std::make_unique<asio::thread_pool>(std::max(1u, options_.scan_threads));
}

void SinkServer::run() {
  start_scans();
  io_.run();
}

void SinkServer::start() {
  start_scans();
  for (unsigned i = 0; i < std::max(1u, options_.threads); ++i) threads_.emplace_back([this] { io_.run(); });
}

void SinkServer::stop() {
  asio::post(io_, [this] {
    boost::system::error_code ignored;
    for (auto& a : tcp_acceptors_) a->close(ignored);
    for (auto& a : unix_acceptors_) a->close(ignored);
  });
  io_.stop();
  for (auto& t : threads_) {
    if (t.joinable()) t.join();
  }
  threads_.clear();
}

std::vector<CollectorSummary> SinkServer::summaries() const {
  std::vector<CollectorSummary> out;
  for (auto& recording : store_->summaries()) {
    CollectorSummary s;
    static_cast<RecordingSummary&>(s) = std::move(recording);
    std::lock_guard<std::mutex> lock(active_mutex_);
    auto it = active_.find(s.id);
    s.connected = it != active_.end() && !it->second.expired();
    out.push_back(std::move(s));
  }
  return out;
}

std::uint64_t SinkServer::refused_peers() const { return refused_.load(); }

FrameBudget::Stats SinkServer::frame_memory() const { return budget_->stats(); }

std::size_t SinkServer::open_connections() const {
  std::lock_guard<std::mutex> lock(slots_mutex_);
  return open_connections_;
}

std::uint64_t SinkServer::connections_over_limit() const { return over_limit_.load(); }

bool SinkServer::admit(const std::string& address, const std::string& peer) {
  std::string why;
  {
    std::lock_guard<std::mutex> lock(slots_mutex_);
    const auto it = open_per_address_.find(address);
    const std::size_t from_address = it == open_per_address_.end() ? 0 : it->second;
    if (open_connections_ >= options_.max_connections) {
      why = std::to_string(open_connections_) + " connections open (--max-connections " +
            std::to_string(options_.max_connections) + ")";
    } else if (!address.empty() && from_address >= options_.max_connections_per_peer) {
      why = std::to_string(from_address) + " connections open from " + address +
            " (--max-connections-per-peer " + std::to_string(options_.max_connections_per_peer) + ")";
    } else {
      ++open_connections_;
      if (!address.empty()) ++open_per_address_[address];
      return true;
    }
  }
  ++over_limit_;
  // One line per interval for each limit, however many peers hit it: the rest are counted in its summary.
  const bool total = why.find("--max-connections ") != std::string::npos;
  if (options_.store.log) {
    options_.store.log->limited(total ? "sink connection limit" : "sink per-peer connection limit",
                                "peer " + peer + " refused at once: " + why);
  }
  return false;
}

void SinkServer::release_slot(const std::string& address) {
  std::lock_guard<std::mutex> lock(slots_mutex_);
  --open_connections_;
  if (address.empty()) return;
  auto it = open_per_address_.find(address);
  if (it != open_per_address_.end() && --it->second == 0) open_per_address_.erase(it);
}

void SinkServer::arm_file_sweep() {
  if (sweep_interval_.count() == 0) return;
  sweep_timer_->expires_after(sweep_interval_);
  sweep_timer_->async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    sweep_files();
    arm_file_sweep();
  });
}

void SinkServer::sweep_files() {
  const auto before = store_->file_stats().closed_idle;
  for (const auto& expired : store_->sweep()) {
    collector_ids_->release(expired.id);
    log("collector " + expired.id + " expired: " + expired.describe());
  }
  const auto after = store_->file_stats();
  if (after.closed_idle > before && options_.store.log) {
    options_.store.log->limited(
        "sink idle files", "closed " + std::to_string(after.closed_idle - before) +
                               " recording files idle for " + std::to_string(options_.store.files.idle_close.count()) +
                               " ms (no connection); " + std::to_string(after.open) + " open");
  }
}

RecordingStore::FileStats SinkServer::files() const { return store_->file_stats(); }

std::uint64_t SinkServer::collectors_over_limit() const { return collectors_over_limit_.load(); }

std::size_t SinkServer::default_max_open_files(std::uint64_t nofile, std::size_t max_connections) {
  constexpr std::uint64_t kOwnDescriptors = 64;
  const std::uint64_t reserved = std::uint64_t{max_connections} + kOwnDescriptors;
  return static_cast<std::size_t>(std::max<std::uint64_t>(16, nofile > reserved ? nofile - reserved : 0));
}

void SinkServer::log(const std::string& line) const {
  if (options_.store.log) options_.store.log->line(line);
}

void SinkServer::log_limited(const std::string& key, const std::string& line) const {
  if (options_.store.log) options_.store.log->limited(key, line);
}

}  // namespace perfstream
