// Synthetic collectors for stream tests (no kernel): trace headers, batches whose every record names its
// collector, batch and index (so what a sink stored can be checked byte for byte), readers for what a sink
// stored, a thread-safe log, and waiting with a deadline. Used by the unit tests of the transport and by the
// kernel end-to-end test that mixes a real `perfstream stream` with synthetic ones. Test-only.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/batch_sink.hpp"
#include "collector/format/trace_reader.hpp"
#include "collector/format/zstd_codec.hpp"
#include "collector/transport/stream_client.hpp"
#include "collector/util/log.hpp"
#include "perfstream.pb.h"

namespace perfstream::testing {

inline v1::TraceHeader synthetic_header(const std::string& recording_id, const std::string& host = "synthetic") {
  v1::TraceHeader h;
  h.set_format_version(1);
  h.set_perfstream_version("test");
  h.set_host(host);
  h.set_kernel_release("6.1.0-synthetic");
  h.set_possible_cpus(4);
  h.set_online_cpus("0-3");
  h.set_recorded_cpus("0-3");
  h.set_clock(v1::MONOTONIC);
  h.set_start_time_ns(1'000'000);
  h.add_probes("synthetic");
  h.set_recording_id(recording_id);
  return h;
}

// "c<collector> s<sequence> r<index>|" plus 0..47 filler bytes that depend on all three: distinct, and of
// varying length so that the size column matters.
inline std::string synthetic_payload(unsigned collector, std::uint64_t sequence, std::uint32_t index) {
  std::string p = "c" + std::to_string(collector) + " s" + std::to_string(sequence) + " r" + std::to_string(index) + "|";
  std::uint32_t x = static_cast<std::uint32_t>(collector * 2654435761u ^ sequence * 40503u ^ index * 9973u);
  const std::size_t filler = (x >> 3) % 48;
  for (std::size_t i = 0; i < filler; ++i) {
    x = x * 1103515245u + 12345u;
    p.push_back(static_cast<char>(x >> 16));
  }
  return p;
}

inline std::uint64_t synthetic_time(unsigned collector, std::uint64_t sequence, std::uint32_t index) {
  return 1'000'000'000ull + sequence * 1'000'000ull + index * 100ull + collector;
}

// Makes the batches of one synthetic collector, deterministically from (collector, sequence).
class SyntheticSource {
 public:
  explicit SyntheticSource(unsigned collector, std::uint32_t records_per_batch = 32)
      : collector_(collector), records_(records_per_batch), compressor_(make_compressor()) {}

  unsigned collector() const { return collector_; }
  std::uint32_t records_per_batch() const { return records_; }

  // The Batch message (protobuf bytes, uncompressed) of `sequence`.
  std::string message(std::uint64_t sequence) {
    encoder_.reset();
    for (std::uint32_t i = 0; i < records_; ++i) {
      const std::string payload = synthetic_payload(collector_, sequence, i);
      encoder_.add_record(synthetic_time(collector_, sequence, i), i % 4,
                          std::span<const std::byte>(reinterpret_cast<const std::byte*>(payload.data()), payload.size()));
    }
    std::string out;
    encoder_.finish(sequence, out);
    return out;
  }

  EncodedBatch batch(std::uint64_t sequence) {
    EncodedBatch b;
    const std::string m = message(sequence);
    b.sequence = sequence;
    b.records = records_;
    b.encoded_bytes = m.size();
    b.first_time_ns = synthetic_time(collector_, sequence, 0);
    if (auto st = compressor_.compress(m, b.compressed); !st) throw std::runtime_error(st.error().message());
    return b;
  }

  // The compressed sizes of batches [from, to) added up: what a sink that stores each of them once has
  // written as batch frame payloads (RecordingSummary::compressed_bytes).
  std::uint64_t compressed_bytes(std::uint64_t from, std::uint64_t to) {
    std::uint64_t total = 0;
    for (std::uint64_t s = from; s < to; ++s) total += batch(s).compressed.size();
    return total;
  }

 private:
  static ZstdCompressor make_compressor() {
    auto c = ZstdCompressor::create(3);
    if (!c) throw std::runtime_error(c.error().message());
    return std::move(*c);
  }
  unsigned collector_;
  std::uint32_t records_;
  ZstdCompressor compressor_;
  BatchEncoder encoder_;
};

// What a sink stored for one collector: every piece (PATH, PATH.1, ...) read to its end.
struct StoredBatch {
  std::uint64_t sequence = 0;
  std::string message;  // the Batch message, decompressed
  std::string file;
};

struct StoredRecording {
  std::vector<v1::TraceHeader> headers;
  std::vector<StoredBatch> batches;
  std::vector<v1::TraceTrailer> trailers;
  std::vector<std::string> damage;  // "path: offset: message" for every piece that did not end cleanly
  std::vector<std::string> files;

  std::map<std::uint64_t, int> sequence_counts() const {
    std::map<std::uint64_t, int> counts;
    for (const auto& b : batches) ++counts[b.sequence];
    return counts;
  }
};

inline std::string piece_path(const std::string& path, unsigned piece) {
  return piece == 0 ? path : path + "." + std::to_string(piece);
}

inline StoredRecording read_recording(const std::string& path) {
  StoredRecording out;
  for (unsigned piece = 0; std::filesystem::exists(piece_path(path, piece)); ++piece) {
    const std::string file = piece_path(path, piece);
    out.files.push_back(file);
    auto reader = TraceFileReader::open(file);
    if (!reader) {
      out.damage.push_back(file + ": " + reader.error().message());
      continue;
    }
    out.headers.push_back((*reader)->header());
    for (;;) {
      ReadOutcome r = (*reader)->next();
      if (r.status == ReadStatus::End) break;
      if (r.status != ReadStatus::Frame) {
        out.damage.push_back(file + ": " + std::to_string(r.offset) + ": " + r.message);
        break;
      }
      if (r.type == FrameType::Batch) {
        v1::Batch b;
        if (!b.ParseFromString(r.message)) {
          out.damage.push_back(file + ": " + std::to_string(r.offset) + ": a batch that does not parse");
          break;
        }
        out.batches.push_back(StoredBatch{b.sequence(), std::move(r.message), file});
      } else if (r.type == FrameType::Trailer) {
        v1::TraceTrailer t;
        t.ParseFromString(r.message);
        out.trailers.push_back(t);
      }
    }
  }
  return out;
}

// Every sequence in [0, count) stored exactly once, none other, each batch byte-exact as `source` made it,
// and every record of it (time, CPU, payload) as the source made it.
inline ::testing::AssertionResult holds_exactly_once(const StoredRecording& stored, SyntheticSource& source,
                                                     std::uint64_t count) {
  if (!stored.damage.empty()) return ::testing::AssertionFailure() << "damaged: " << stored.damage.front();
  if (stored.files.empty()) return ::testing::AssertionFailure() << "no file";
  const auto counts = stored.sequence_counts();
  for (std::uint64_t s = 0; s < count; ++s) {
    auto it = counts.find(s);
    if (it == counts.end()) return ::testing::AssertionFailure() << "batch " << s << " is missing";
    if (it->second != 1) return ::testing::AssertionFailure() << "batch " << s << " is stored " << it->second << " times";
  }
  if (counts.size() != count) {
    return ::testing::AssertionFailure() << counts.size() << " distinct batches stored, " << count << " expected";
  }
  for (const auto& b : stored.batches) {
    if (b.message != source.message(b.sequence)) {
      return ::testing::AssertionFailure() << "batch " << b.sequence << " differs from what was sent";
    }
    auto view = BatchView::parse(b.message);
    if (!view) return ::testing::AssertionFailure() << "batch " << b.sequence << ": " << view.error().message();
    if (view->size() != source.records_per_batch()) {
      return ::testing::AssertionFailure() << "batch " << b.sequence << " has " << view->size() << " records";
    }
    for (std::uint32_t i = 0; i < view->size(); ++i) {
      const auto r = view->record(i);
      const std::string want = synthetic_payload(source.collector(), b.sequence, i);
      if (std::string(r.payload.data(), r.payload.size()) != want || r.cpu != i % 4 ||
          r.time_ns != synthetic_time(source.collector(), b.sequence, i)) {
        return ::testing::AssertionFailure() << "batch " << b.sequence << " record " << i << " differs";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// Log lines from a sink or a client (any thread), kept for the test to look at.
class LogLines {
 public:
  // A log whose lines land here, each after `prefix`; it lives as long as this object.
  Log* sink(const std::string& prefix = "") {
    auto log = std::make_unique<Log>([this, prefix](const std::string& line) {
      std::lock_guard<std::mutex> lock(mutex_);
      lines_.push_back(prefix + line);
    });
    std::lock_guard<std::mutex> lock(mutex_);
    logs_.push_back(std::move(log));
    return logs_.back().get();
  }
  std::vector<std::string> lines() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return lines_;
  }
  std::size_t count(const std::string& needle) const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::size_t n = 0;
    for (const auto& l : lines_) n += l.find(needle) != std::string::npos;
    return n;
  }
  std::string text() const {
    std::lock_guard<std::mutex> lock(mutex_);
    std::string out;
    for (const auto& l : lines_) out += l + "\n";
    return out;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<std::string> lines_;
  std::vector<std::unique_ptr<Log>> logs_;  // last: destroyed first, their pending summaries land in lines_
};

// Polls `done` every few milliseconds until it holds or `timeout` passes; returns its last value.
inline bool wait_until(const std::function<bool()>& done, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return done();
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// Client options for tests: short backoff, so reconnects take milliseconds.
inline StreamClientOptions fast_client_options(const Endpoint& endpoint, const std::string& spool_dir) {
  StreamClientOptions o;
  o.endpoint = endpoint;
  o.spool_dir = spool_dir;
  o.backoff_min = std::chrono::milliseconds(20);
  o.backoff_max = std::chrono::milliseconds(200);
  return o;
}

// A SpooledSender::finish answer as an assertion: it holds when everything was acknowledged and the trailer
// written, and otherwise says why not.
inline ::testing::AssertionResult finished_in_time(const Result<bool>& done) {
  if (!done) return ::testing::AssertionFailure() << "finish failed: " << done.error().message();
  if (!done.value()) return ::testing::AssertionFailure() << "finish timed out";
  return ::testing::AssertionSuccess();
}

inline std::unique_ptr<StreamClient> make_client(const StreamClientOptions& options, const std::string& id,
                                                 const std::string& host = "synthetic") {
  auto c = StreamClient::create(options, synthetic_header(id + "-recording", host), id);
  if (!c) throw std::runtime_error(c.error().message());
  return std::move(*c);
}

}  // namespace perfstream::testing
