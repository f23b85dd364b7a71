// BatchWorker: batches reach the sink in submission order, compressed; a refused batch is counted and
// reported in-band by a loss-only batch before the next one the sink takes.
#include <gtest/gtest.h>

#include <mutex>
#include <vector>

#include "collector/format/batch_encoder.hpp"
#include "collector/format/batch_worker.hpp"
#include "collector/format/trace_reader.hpp"

namespace perfstream {
namespace {

class RecordingSink : public BatchSink {
 public:
  Status write_batch(const EncodedBatch& batch) override {
    std::lock_guard<std::mutex> lock(mutex_);
    if (refuse_next_ > 0) {
      --refuse_next_;
      return Error("refused for the test");
    }
    batches_.push_back(batch);
    return {};
  }
  std::vector<EncodedBatch> batches() {
    std::lock_guard<std::mutex> lock(mutex_);
    return batches_;
  }
  void refuse(int n) {
    std::lock_guard<std::mutex> lock(mutex_);
    refuse_next_ = n;
  }

 private:
  std::mutex mutex_;
  std::vector<EncodedBatch> batches_;
  int refuse_next_ = 0;
};

v1::Batch decode(const EncodedBatch& batch) {
  auto d = ZstdDecompressor::create();
  std::string message;
  EXPECT_TRUE(d->decompress(batch.compressed, 1 << 20, message));
  auto view = BatchView::parse(message);
  EXPECT_TRUE(view) << view.error().message();
  return view->batch();
}

EncodedBatch submit_records(BatchWorker& worker, std::uint32_t records, std::string& buffer) {
  BatchEncoder encoder;
  for (std::uint32_t i = 0; i < records; ++i) {
    const std::string payload = "record-" + std::to_string(i);
    encoder.add_record(1000 + i, i % 2, std::as_bytes(std::span(payload.data(), payload.size())));
  }
  EncodedBatch batch;
  batch.records = records;
  encoder.finish_unstamped(buffer);
  batch.encoded_bytes = buffer.size();
  worker.submit(worker.add_producer(), batch, buffer, 0);
  return batch;
}

TEST(BatchWorker, DeliversEveryBatchInSubmissionOrderCompressed) {
  RecordingSink sink;
  PipelineCounters counters;
  BatchWorker worker(std::move(*ZstdCompressor::create(1)), sink, counters, BatchWorkerOptions{2});
  std::string buffer;
  for (std::uint32_t n = 1; n <= 50; ++n) {
    submit_records(worker, n, buffer);
    EXPECT_TRUE(buffer.empty()) << "the caller gets an empty buffer back";
  }
  worker.finish();
  const auto batches = sink.batches();
  ASSERT_EQ(batches.size(), 50u);
  for (std::uint32_t i = 0; i < 50; ++i) {
    EXPECT_EQ(batches[i].sequence, i);
    const v1::Batch b = decode(batches[i]);
    EXPECT_EQ(b.sequence(), i);
    EXPECT_EQ(b.record_count(), i + 1);
  }
  EXPECT_EQ(counters.batches.load(), 50u);
  EXPECT_EQ(counters.records.load(), 50u * 51 / 2);
  EXPECT_EQ(counters.dropped_batches.load(), 0u);
  EXPECT_FALSE(worker.first_error());
}

TEST(BatchWorker, RefusedBatchesAreCountedAndReportedInBandBeforeTheNextOne) {
  RecordingSink sink;
  PipelineCounters counters;
  BatchWorker second(std::move(*ZstdCompressor::create(1)), sink, counters, BatchWorkerOptions{1});
  std::string buffer;
  submit_records(second, 3, buffer);  // seq 0: stored
  second.wait_idle();
  sink.refuse(1);
  submit_records(second, 5, buffer);   // seq 1: refused
  submit_records(second, 7, buffer);   // seq 3: stored, after a loss-only batch (seq 2) for 5 records
  second.finish();
  const auto batches = sink.batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(batches[0].sequence, 0u);
  const v1::Batch notice = decode(batches[1]);
  EXPECT_EQ(notice.sequence(), 2u) << "a refused sequence number is used up";
  EXPECT_EQ(notice.record_count(), 0u);
  ASSERT_EQ(notice.lost_size(), 1);
  EXPECT_EQ(notice.lost(0).count(), 5u);
  EXPECT_EQ(notice.lost(0).source(), v1::LostNotice::COLLECTOR);
  EXPECT_EQ(batches[2].sequence, 3u);
  EXPECT_EQ(decode(batches[2]).record_count(), 7u);
  EXPECT_EQ(counters.dropped_batches.load(), 1u);
  EXPECT_EQ(counters.dropped_records.load(), 5u);
  ASSERT_TRUE(second.first_error());
  EXPECT_EQ(second.first_error()->message(), "refused for the test");
}

// When the notice itself is refused, the count is kept and reported by the next notice that gets through.
TEST(BatchWorker, ARefusedNoticeIsRetriedWithTheFullCount) {
  RecordingSink sink;
  PipelineCounters counters;
  BatchWorker worker(std::move(*ZstdCompressor::create(1)), sink, counters, BatchWorkerOptions{1});
  std::string buffer;
  sink.refuse(2);
  submit_records(worker, 5, buffer);  // refused
  submit_records(worker, 7, buffer);  // its notice refused, then stored
  submit_records(worker, 9, buffer);  // notice for 5 stored, then stored
  worker.finish();
  const auto batches = sink.batches();
  ASSERT_EQ(batches.size(), 3u);
  EXPECT_EQ(decode(batches[0]).record_count(), 7u);
  const v1::Batch notice = decode(batches[1]);
  ASSERT_EQ(notice.lost_size(), 1);
  EXPECT_EQ(notice.lost(0).count(), 5u);
  EXPECT_EQ(decode(batches[2]).record_count(), 9u);
  EXPECT_EQ(counters.dropped_records.load(), 5u);
}

}  // namespace
}  // namespace perfstream
