// Helpers for tests that run a SinkServer in-process on loopback and talk to it: start it, the frames a
// collector sends (hello, batch), what the sink says of a collector, and which of this process's
// descriptors are open on the sink's files.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "collector/transport/sink_server.hpp"
#include "collector/transport/stream_protocol.hpp"
#include "testing/synthetic_stream.hpp"

namespace perfstream::testing {

// A sink started on its network threads; throws (failing the test) when it cannot be created.
inline std::unique_ptr<SinkServer> start_sink(const SinkOptions& options) {
  auto s = SinkServer::create(options);
  if (!s) throw std::runtime_error(s.error().message());
  (*s)->start();
  return std::move(*s);
}

// A collector's hello for `id`, with a synthetic header of recording "<id>-recording".
inline std::string hello_frame(const std::string& id) {
  v1::StreamHello hello;
  hello.set_protocol_version(kStreamProtocolVersion);
  hello.set_collector_id(id);
  *hello.mutable_header() = synthetic_header(id + "-recording");
  return encode_control_frame(FrameType::Hello, hello);
}

// The data frame of `source`'s batch `sequence`, as a collector sends it.
inline std::string batch_frame(SyntheticSource& source, std::uint64_t sequence) {
  EncodedBatch b = source.batch(sequence);
  return data_frame_header(FrameType::Batch, b.compressed.size()) + b.compressed;
}

// What the sink says of collector `id`, if it knows it.
inline std::optional<CollectorSummary> summary_of(const SinkServer& sink, const std::string& id) {
  for (const auto& s : sink.summaries()) {
    if (s.id == id) return s;
  }
  return std::nullopt;
}

// How many of this process's descriptors are open on files under `dir`.
inline std::size_t open_files_under(const std::string& dir) {
  std::size_t n = 0;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(fd.path(), ec);
    if (!ec && target.string().rfind(dir + "/", 0) == 0) ++n;
  }
  return n;
}

}  // namespace perfstream::testing
