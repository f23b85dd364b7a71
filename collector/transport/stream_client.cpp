#include "collector/transport/stream_client.hpp"

#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <future>

#include "collector/format/zstd_codec.hpp"
#include "collector/transport/stream_protocol.hpp"

namespace perfstream {

// Everything that runs on the sender thread.
class StreamClient::Sender {
 public:
  Sender(const StreamClientOptions& options, Spool& spool, v1::TraceHeader header, std::string collector_id,
         std::shared_ptr<asio::ssl::context> tls)
      : options_(options),
        spool_(spool),
        tls_(std::move(tls)),
        work_(asio::make_work_guard(io_)),
        retry_timer_(io_),
        handshake_timer_(io_),
        backoff_(options.backoff_min) {
    v1::StreamHello hello;
    hello.set_protocol_version(kStreamProtocolVersion);
    hello.set_collector_id(std::move(collector_id));
    *hello.mutable_header() = std::move(header);
    hello_frame_ = encode_control_frame(FrameType::Hello, hello);
  }

  asio::io_context& io() { return io_; }
  void run() { io_.run(); }
  void begin() { connect(); }
  void wake() { asio::post(io_, [this] { pump(); }); }

  // Called on the sender thread; `done` is fulfilled when the trailer is written.
  void finish(std::string trailer_frame, std::shared_ptr<std::promise<void>> done) {
    finishing_ = true;
    trailer_frame_ = std::move(trailer_frame);
    finish_done_ = std::move(done);
    pump();
  }
  void shutdown() {
    stopped_ = true;
    retry_timer_.cancel();
    handshake_timer_.cancel();
    abort_connect();  // a connect in flight would hold run() until the kernel gives up on it (minutes)
    if (conn_) conn_->close();
    work_.reset();
  }

  std::atomic<bool> connected{false};
  std::atomic<std::uint64_t> acked_through{0};
  std::atomic<std::uint64_t> connects{0};
  std::atomic<std::uint64_t> sent{0};

 private:
  void log(const std::string& line) {
    if (options_.log) options_.log->line(line);
  }

  void connect() {
    if (stopped_) return;
    const Endpoint& ep = options_.endpoint;
    ++generation_;
    const std::uint64_t gen = generation_;
    arm_handshake_deadline(gen);
    if (ep.kind == Endpoint::Kind::Unix) {
      auto socket = std::make_shared<Connection::Unix>(io_);
      abort_connect_ = [socket] {
        boost::system::error_code ignored;
        socket->close(ignored);
      };
      socket->async_connect(asio::local::stream_protocol::endpoint(ep.path),
                            [this, gen, socket](const boost::system::error_code& ec) {
                              if (gen != generation_ || stopped_) return;
                              abort_connect_ = nullptr;
                              if (ec) return fail("connecting: " + ec.message());
                              conn_ = std::make_unique<Connection>(std::move(*socket), options_.endpoint.to_string());
                              say_hello();
                            });
      return;
    }
    auto resolver = std::make_shared<asio::ip::tcp::resolver>(io_);
    abort_connect_ = [resolver] { resolver->cancel(); };
    resolver->async_resolve(
        ep.host, std::to_string(ep.port),
        [this, gen, resolver](const boost::system::error_code& ec, asio::ip::tcp::resolver::results_type results) {
          if (gen != generation_ || stopped_) return;
          abort_connect_ = nullptr;
          if (ec) return fail("resolving " + options_.endpoint.host + ": " + ec.message());
          auto socket = std::make_shared<Connection::Tcp>(io_);
          abort_connect_ = [socket] {
            boost::system::error_code ignored;
            socket->close(ignored);
          };
          asio::async_connect(*socket, results,
                              [this, gen, socket](const boost::system::error_code& ec2, const asio::ip::tcp::endpoint&) {
                                if (gen != generation_ || stopped_) return;
                                abort_connect_ = nullptr;
                                if (ec2) return fail("connecting: " + ec2.message());
                                socket->set_option(asio::ip::tcp::no_delay(true));
                                if (!tls_) {
                                  conn_ = std::make_unique<Connection>(std::move(*socket), options_.endpoint.to_string());
                                  return say_hello();
                                }
                                auto stream = std::make_unique<Connection::Tls>(std::move(*socket), *tls_);
                                SSL_set_tlsext_host_name(stream->native_handle(), options_.endpoint.host.c_str());
                                stream->set_verify_callback(asio::ssl::host_name_verification(options_.endpoint.host));
                                conn_ = std::make_unique<Connection>(std::move(stream), options_.endpoint.to_string());
                                conn_->tls()->async_handshake(asio::ssl::stream_base::client,
                                                              [this, gen](const boost::system::error_code& ec3) {
                                                                if (gen != generation_ || stopped_) return;
                                                                if (ec3) return fail("TLS handshake: " + ec3.message());
                                                                say_hello();
                                                              });
                              });
        });
  }

  // A connect nobody answers (SYNs dropped) or a peer that never welcomes us would hold the sender
  // forever, with batches piling up unsent and no retry: the handshake has a deadline, like the sink's
  // hello.
  void arm_handshake_deadline(std::uint64_t gen) {
    handshake_timer_.expires_after(options_.handshake_timeout);
    handshake_timer_.async_wait([this, gen](const boost::system::error_code& ec) {
      if (ec || gen != generation_ || stopped_ || connected) return;
      fail(std::string(abort_connect_ ? "no connection" : "no welcome from the sink") + " within " +
           std::to_string(options_.handshake_timeout.count()) + " ms");
    });
  }

  void abort_connect() {
    if (abort_connect_) abort_connect_();
    abort_connect_ = nullptr;
  }

  void say_hello() {
    const std::uint64_t gen = generation_;
    conn_->async_write(asio::buffer(hello_frame_), [this, gen](const boost::system::error_code& ec, std::size_t) {
      if (gen != generation_ || stopped_) return;
      if (ec) return fail("sending hello: " + ec.message());
      read_frame();
    });
  }

  void read_frame() {
    const std::uint64_t gen = generation_;
    conn_->async_read(asio::buffer(in_header_), [this, gen](const boost::system::error_code& ec, std::size_t) {
      if (gen != generation_ || stopped_) return;
      if (ec) return fail(ec == asio::error::eof ? "the sink closed the connection" : "reading: " + ec.message());
      std::string why;
      auto header = parse_frame_header(std::span<const char>(in_header_.data(), in_header_.size()), &why,
                                       FrameContext::Stream, 1 << 20);
      if (!header) return fail("bad frame from the sink: " + why);
      in_payload_.resize(header->payload_length);
      conn_->async_read(asio::buffer(in_payload_), [this, gen, type = header->type](const boost::system::error_code& ec2,
                                                                                   std::size_t) {
        if (gen != generation_ || stopped_) return;
        if (ec2) return fail("reading: " + ec2.message());
        on_frame(type);
      });
    });
  }

  void on_frame(FrameType type) {
    switch (type) {
      case FrameType::Welcome: {
        v1::StreamWelcome welcome;
        if (!welcome.ParseFromString(in_payload_)) return fail("the sink's welcome does not decode");
        spool_.acknowledge(welcome.next_sequence());
        acked_through = welcome.next_sequence();
        spool_.rewind();
        handshake_timer_.cancel();
        connected = true;
        ++connects;
        backoff_ = options_.backoff_min;
        log("connected to " + options_.endpoint.to_string() + " (sink " + welcome.sink_id() + "); " +
            std::to_string(spool_.pending_batches()) + " batches to send");
        pump();
        break;
      }
      case FrameType::Ack: {
        v1::StreamAck ack;
        if (!ack.ParseFromString(in_payload_)) return fail("an ack does not decode");
        spool_.acknowledge(ack.through());
        acked_through = ack.through();
        pump();
        break;
      }
      case FrameType::Refusal: {
        v1::StreamRefusal refusal;
        refusal.ParseFromString(in_payload_);
        return fail("the sink refused us: " + refusal.reason());
      }
      default:
        return fail("unexpected frame type " + std::to_string(static_cast<int>(type)) + " from the sink");
    }
    read_frame();
  }

  void pump() {
    if (!connected || writing_ || stopped_) return;
    if (finishing_ && spool_.pending_batches() == 0) {
      if (trailer_frame_.empty()) return;
      writing_ = true;
      const std::uint64_t gen = generation_;
      conn_->async_write(asio::buffer(trailer_frame_), [this, gen](const boost::system::error_code& ec, std::size_t) {
        writing_ = false;
        if (gen != generation_ || stopped_) return;
        if (ec) return fail("sending the trailer: " + ec.message());
        trailer_frame_.clear();
        if (finish_done_) finish_done_->set_value();
        finish_done_.reset();
      });
      return;
    }
    if (spool_.inflight_batches() >= options_.window) return;
    std::uint64_t sequence = 0;
    if (!spool_.next_unsent(&sequence, &out_payload_)) return;
    out_header_ = data_frame_header(FrameType::Batch, out_payload_.size());
    writing_ = true;
    const std::uint64_t gen = generation_;
    std::array<asio::const_buffer, 2> buffers{asio::buffer(out_header_), asio::buffer(out_payload_)};
    conn_->async_write(buffers, [this, gen](const boost::system::error_code& ec, std::size_t) {
      writing_ = false;
      if (gen != generation_ || stopped_) return;
      if (ec) return fail("sending a batch: " + ec.message());
      ++sent;
      pump();
    });
  }

  void fail(const std::string& why) {
    if (stopped_) return;
    ++generation_;  // every handler of the old connection becomes a no-op
    abort_connect();
    if (conn_) conn_->close();
    const bool was_connected = connected.exchange(false);
    writing_ = false;
    log("sink " + options_.endpoint.to_string() + ": " + why + "; " + std::to_string(spool_.pending_batches()) +
        " batches spooled; retrying in " + std::to_string(backoff_.count()) + " ms");
    (void)was_connected;
    retry_timer_.expires_after(backoff_);
    backoff_ = std::min(backoff_ * 2, options_.backoff_max);
    retry_timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) connect();
    });
  }

  StreamClientOptions options_;
  Spool& spool_;
  std::shared_ptr<asio::ssl::context> tls_;
  asio::io_context io_;
  asio::executor_work_guard<asio::io_context::executor_type> work_;
  asio::steady_timer retry_timer_;
  asio::steady_timer handshake_timer_;
  std::function<void()> abort_connect_;  // closes the socket (or cancels the resolve) of a connect in flight
  std::chrono::milliseconds backoff_;
  std::unique_ptr<Connection> conn_;
  std::uint64_t generation_ = 0;
  bool writing_ = false;
  bool stopped_ = false;
  bool finishing_ = false;
  std::string hello_frame_;
  std::string trailer_frame_;
  std::shared_ptr<std::promise<void>> finish_done_;
  std::array<char, kFrameHeaderSize> in_header_{};
  std::string in_payload_;
  std::string out_header_;
  std::string out_payload_;
};

Result<std::unique_ptr<StreamClient>> StreamClient::create(const StreamClientOptions& options, v1::TraceHeader header,
                                                           std::string collector_id) {
  std::unique_ptr<StreamClient> client(new StreamClient());
  client->options_ = options;
  std::shared_ptr<asio::ssl::context> tls;
  if (options.tls.enabled()) {
    if (options.endpoint.kind != Endpoint::Kind::Tcp) return Error("TLS is for tcp:// endpoints");
    auto ctx = make_tls_context(options.tls, false);
    if (!ctx) return ctx.error();
    tls = *ctx;
  }
  auto spool = Spool::create_for_recording(options.spool_dir, options.spool_bytes, header, options.log);
  if (!spool) return spool.error();
  client->spool_ = std::move(*spool);
  client->sender_ = std::make_unique<Sender>(client->options_, *client->spool_, std::move(header),
                                             std::move(collector_id), tls);
  Sender* sender = client->sender_.get();
  client->spool_->set_notify([sender] { sender->wake(); });
  return client;
}

StreamClient::~StreamClient() {
  if (sender_) {
    Sender* sender = sender_.get();
    asio::post(sender->io(), [sender] { sender->shutdown(); });
  }
  if (thread_.joinable()) thread_.join();
  if (spool_) spool_->set_notify(nullptr);
}

Status StreamClient::write_batch(const EncodedBatch& batch) { return spool_->append_batch(batch); }

void StreamClient::start() {
  Sender* sender = sender_.get();
  asio::post(sender->io(), [sender] { sender->begin(); });
  thread_ = std::thread([sender] { sender->run(); });
}

bool StreamClient::finish(const v1::TraceTrailer& trailer, std::chrono::milliseconds timeout,
                          const std::function<bool()>& give_up) {
  auto compressor = ZstdCompressor::create(3);
  std::string payload;
  if (!compressor || !compressor->compress(trailer.SerializeAsString(), payload)) return false;
  std::string frame = data_frame_header(FrameType::Trailer, payload.size()) + payload;
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  Sender* sender = sender_.get();
  asio::post(sender->io(), [sender, frame = std::move(frame), done]() mutable { sender->finish(std::move(frame), done); });
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = deadline - std::chrono::steady_clock::now();
    const auto slice = give_up ? std::min<std::chrono::steady_clock::duration>(left, std::chrono::milliseconds(50)) : left;
    if (future.wait_for(slice) == std::future_status::ready) return true;
    if (std::chrono::steady_clock::now() >= deadline || (give_up && give_up())) return false;
  }
}

StreamClientStatus StreamClient::status() const {
  StreamClientStatus s;
  s.connected = sender_->connected.load();
  s.acked_through = sender_->acked_through.load();
  s.pending_batches = spool_->pending_batches();
  s.pending_bytes = spool_->pending_bytes();
  s.refused_batches = spool_->refused_batches();
  s.connects = sender_->connects.load();
  s.sent_batches = sender_->sent.load();
  return s;
}

}  // namespace perfstream
