// Kafka transport against librdkafka's mock cluster (three brokers in this process, real Kafka protocol
// over loopback): KafkaPublisher -> topic -> KafkaSink -> trace files, exactly once and byte-exact, through
// broker outages, sink restarts, duplicates and bad messages. The addresses and settings parsers too.
#include <gtest/gtest.h>

#include <fstream>
#include <thread>

#include "collector/format/frame.hpp"
#include "collector/kafka/kafka_config.hpp"
#include "collector/kafka/kafka_publisher.hpp"
#include "collector/kafka/kafka_sink.hpp"
#include "testing/kafka_mock.hpp"
#include "testing/synthetic_stream.hpp"
#include "testing/temp_dir.hpp"

namespace perfstream {
namespace {

using namespace std::chrono_literals;
using testing::LogLines;
using testing::MockKafka;
using testing::SyntheticSource;
using testing::TempDir;
using testing::wait_until;

// --- addresses and settings ------------------------------------------------------------------------------

TEST(KafkaAddress, ParsesBrokersAndTopic) {
  auto a = KafkaAddress::parse("kafka://k1:9093,k2,[::1]:19092,10.0.0.7/perf.events-v1");
  ASSERT_TRUE(a) << a.error().message();
  EXPECT_EQ(a->bootstrap_servers(), "k1:9093,k2:9092,[::1]:19092,10.0.0.7:9092");
  EXPECT_EQ(a->topic, "perf.events-v1");
  EXPECT_EQ(a->headers_topic(), "perf.events-v1.headers");
  EXPECT_EQ(a->to_string(), "kafka://k1:9093,k2:9092,[::1]:19092,10.0.0.7:9092/perf.events-v1");
}

TEST(KafkaAddress, RefusesWhatIsNotOneAndSaysWhy) {
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"tcp://k1:9092/t", "kafka://BROKER"},
      {"kafka://k1:9092", "no topic"},
      {"kafka:///t", "no broker"},
      {"kafka://k1:9092/", "not a Kafka topic name"},
      {"kafka://k1:9092/a/b", "not a Kafka topic name"},
      {"kafka://k1:9092/..", "not a Kafka topic name"},
      {"kafka://k1:9092/" + std::string(250, 't'), "not a Kafka topic name"},
      {"kafka://k1:0/t", "port"},
      {"kafka://k1:65536/t", "port"},
      {"kafka://k1:x/t", "port"},
      {"kafka://k1,,k2/t", "no host"},
      {"kafka://::1:9092/t", "brackets"},
      {"kafka://[::1/t", "no closing ']'"},
      {"kafka://k 1:9092/t", "not allowed in a host name"},
  };
  for (const auto& [text, why] : bad) {
    auto a = KafkaAddress::parse(text);
    ASSERT_FALSE(a) << text;
    EXPECT_NE(a.error().message().find(why), std::string::npos) << text << ": " << a.error().message();
  }
}

TEST(KafkaSettings, PropertiesFromFlagsAndFilesWithErrorsThatNameTheLine) {
  auto p = parse_kafka_property(" sasl.mechanisms = SCRAM-SHA-512 ");
  ASSERT_TRUE(p);
  EXPECT_EQ(p->first, "sasl.mechanisms");
  EXPECT_EQ(p->second, "SCRAM-SHA-512");
  EXPECT_FALSE(parse_kafka_property("security.protocol"));
  EXPECT_FALSE(parse_kafka_property("=x"));

  TempDir dir;
  {
    std::ofstream f(dir.file("good.properties"));
    f << "# TLS to the brokers\n\nsecurity.protocol=SSL\n  ssl.ca.location=/etc/ssl/ca.pem\n";
  }
  auto good = read_kafka_properties(dir.file("good.properties"));
  ASSERT_TRUE(good) << good.error().message();
  ASSERT_EQ(good->size(), 2u);
  EXPECT_EQ((*good)[1], std::make_pair(std::string("ssl.ca.location"), std::string("/etc/ssl/ca.pem")));
  {
    std::ofstream f(dir.file("bad.properties"));
    f << "acks=all\nlinger.ms\n";
  }
  auto bad = read_kafka_properties(dir.file("bad.properties"));
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message().find("bad.properties:2:"), std::string::npos) << bad.error().message();
  auto missing = read_kafka_properties(dir.file("none.properties"));
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message().find("none.properties"), std::string::npos);
}

TEST(KafkaSettings, UnknownOrGuaranteeBreakingSettingsAreRefused) {
  TempDir dir;
  KafkaPublisherOptions options;
  options.address = *KafkaAddress::parse("kafka://127.0.0.1:1/t");
  options.spool_dir = dir.file("spool");
  options.properties = {{"compression.type", "gzip"}};
  auto p = KafkaPublisher::create(options, testing::synthetic_header("r"), "c");
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message().find("compression.type=gzip is not allowed: a batch is a zstd frame already"),
            std::string::npos)
      << p.error().message();
  options.properties = {{"no.such.setting", "1"}};
  p = KafkaPublisher::create(options, testing::synthetic_header("r"), "c");
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message().find("no.such.setting=1"), std::string::npos) << p.error().message();
  options.properties = {{"compression.type", "none"}, {"linger.ms", "20"}, {"security.protocol", "plaintext"}};
  EXPECT_TRUE(KafkaPublisher::create(options, testing::synthetic_header("r"), "c"));

  KafkaSinkOptions sink;
  sink.address = options.address;
  sink.store.dir = dir.file("sink");
  sink.group = "g";
  sink.properties = {{"enable.auto.commit", "true"}};
  auto s = KafkaSink::create(sink);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("enable.auto.commit=true is not allowed: offsets are committed by perfstream"),
            std::string::npos)
      << s.error().message();
  sink.properties.clear();
  sink.group.clear();
  s = KafkaSink::create(sink);
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message().find("--group"), std::string::npos);
}

// --- through the mock cluster --------------------------------------------------------------------------

struct Collector {
  std::string host;
  std::string id;
  std::unique_ptr<KafkaPublisher> publisher;
};

Collector make_collector(const MockKafka& kafka, const std::string& topic, const TempDir& dir, const std::string& host,
                         LogLines& log, const KafkaProperties& extra = {}) {
  KafkaPublisherOptions options;
  options.address = *KafkaAddress::parse(kafka.url(topic));
  options.spool_dir = dir.file("spool-" + host);
  options.log = log.sink(host + ": ");
  // Quick reconnects: the outage tests bring brokers back within seconds.
  options.properties = {{"linger.ms", "1"}, {"retry.backoff.ms", "50"}, {"reconnect.backoff.max.ms", "500"}};
  options.properties.insert(options.properties.end(), extra.begin(), extra.end());
  Collector c;
  c.host = host;
  c.id = host + "-rec";
  auto p = KafkaPublisher::create(options, testing::synthetic_header("rec", host), c.id);
  if (!p) throw std::runtime_error(p.error().message());
  c.publisher = std::move(*p);
  if (auto st = c.publisher->start(); !st) throw std::runtime_error(st.error().message());
  return c;
}

KafkaSinkOptions sink_options(const MockKafka& kafka, const std::string& topic, const std::string& dir,
                              const std::string& group, LogLines& log) {
  KafkaSinkOptions o;
  o.address = *KafkaAddress::parse(kafka.url(topic));
  o.group = group;
  o.store.dir = dir;
  o.commit_interval = 200ms;
  o.header_timeout = 10s;
  // A member that lost its coordinator rejoins; the group waits for the old membership to time out first
  // (session.timeout.ms, 45 s by default): short here.
  o.properties = {{"reconnect.backoff.max.ms", "500"}, {"session.timeout.ms", "6000"}, {"heartbeat.interval.ms", "500"}};
  o.store.log = log.sink("sink: ");
  return o;
}

// A KafkaSink consuming on its own thread until the test is done with it.
class RunningSink {
 public:
  explicit RunningSink(const KafkaSinkOptions& options) {
    auto s = KafkaSink::create(options);
    if (!s) throw std::runtime_error(s.error().message());
    sink_ = std::move(*s);
    thread_ = std::thread([this] { outcome_ = sink_->run(); });
  }
  ~RunningSink() { (void)stop(); }
  Status stop() {
    if (thread_.joinable()) {
      sink_->stop();
      thread_.join();
    }
    return outcome_;
  }
  KafkaSink& operator*() { return *sink_; }
  KafkaSink* operator->() { return sink_.get(); }
  std::optional<RecordingSummary> summary(const std::string& id) const {
    for (const auto& s : sink_->summaries()) {
      if (s.id == id) return s;
    }
    return std::nullopt;
  }
  bool finished(const std::string& id) const {
    auto s = summary(id);
    return s && s->finished;
  }

 private:
  std::unique_ptr<KafkaSink> sink_;
  std::thread thread_;
  Status outcome_;
};

void publish(KafkaPublisher& publisher, SyntheticSource& source, std::uint64_t from, std::uint64_t to,
             std::chrono::microseconds pause = 200us) {
  for (std::uint64_t s = from; s < to; ++s) {
    Status st = publisher.write_batch(source.batch(s));
    ASSERT_TRUE(st) << st.error().message();
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
  }
}

v1::TraceTrailer trailer_of(std::uint64_t batches) {
  v1::TraceTrailer t;
  t.set_batches(batches);
  return t;
}

TEST(KafkaMock, TwoHostsThroughThreeBrokersToTheirOwnFilesExactlyOnceByteExact) {
  MockKafka kafka(3);
  kafka.create_topics("events", 4);
  TempDir dir;
  LogLines log;
  constexpr std::uint64_t kBatches = 120;
  RunningSink sink(sink_options(kafka, "events", dir.file("sink"), "sinks", log));
  std::vector<Collector> collectors;
  collectors.push_back(make_collector(kafka, "events", dir, "host-a", log));
  collectors.push_back(make_collector(kafka, "events", dir, "host-b", log));
  std::vector<std::thread> feeders;
  for (unsigned i = 0; i < collectors.size(); ++i) {
    feeders.emplace_back([&, i] {
      SyntheticSource source(i, 50);
      publish(*collectors[i].publisher, source, 0, kBatches);
    });
  }
  for (auto& t : feeders) t.join();
  for (auto& c : collectors) ASSERT_TRUE(testing::finished_in_time(c.publisher->finish(trailer_of(kBatches), 30s))) << log.text();
  for (auto& c : collectors) ASSERT_TRUE(wait_until([&] { return sink.finished(c.id); }, 30s)) << log.text();
  ASSERT_TRUE(sink.stop()) << log.text();

  for (unsigned i = 0; i < collectors.size(); ++i) {
    SCOPED_TRACE(collectors[i].host);
    const auto status = collectors[i].publisher->status();
    EXPECT_EQ(status.acked_through, kBatches);
    EXPECT_EQ(status.pending_batches, 0u);
    EXPECT_EQ(status.refused_batches, 0u);
    EXPECT_TRUE(status.error.empty()) << status.error;
    const auto s = *sink.summary(collectors[i].id);
    EXPECT_EQ(s.file, dir.file("sink") + "/" + collectors[i].id + ".data");
    EXPECT_EQ(s.host, collectors[i].host);
    EXPECT_EQ(s.batches, kBatches);
    EXPECT_EQ(s.records, kBatches * 50);
    SyntheticSource source(i, 50);
    const auto stored = testing::read_recording(s.file);
    EXPECT_TRUE(testing::holds_exactly_once(stored, source, kBatches));
    ASSERT_EQ(stored.headers.size(), 1u);
    EXPECT_EQ(stored.headers[0].host(), collectors[i].host);
    ASSERT_EQ(stored.trailers.size(), 1u);
    EXPECT_EQ(stored.trailers[0].batches(), kBatches);
    EXPECT_EQ(stored.trailers[0].records(), kBatches * 50);
  }
  EXPECT_EQ(sink->stats().rejected, 0u) << log.text();
  EXPECT_EQ(sink->stats().batches, 2 * kBatches);
  EXPECT_EQ(sink->stats().records, 2 * kBatches * 50);
  SyntheticSource a(0, 50), b(1, 50);
  EXPECT_EQ(sink->stats().compressed_bytes, a.compressed_bytes(0, kBatches) + b.compressed_bytes(0, kBatches));
}

TEST(KafkaMock, ALeaderBrokerFailedAndRestoredMidStreamLosesNothing) {
  MockKafka kafka(3);
  kafka.create_topics("events", 3);
  for (int p = 0; p < 3; ++p) kafka.set_leader("events", p, 2);  // every partition's leader is broker 2
  TempDir dir;
  LogLines log;
  constexpr std::uint64_t kBatches = 150;
  RunningSink sink(sink_options(kafka, "events", dir.file("sink"), "sinks", log));
  // Messages expire after 1 s: the 3 s outage fails their delivery reports, and the publisher has to put
  // them back and publish them again.
  Collector c = make_collector(kafka, "events", dir, "host-a", log, {{"message.timeout.ms", "1000"}});
  SyntheticSource source(7, 40);
  publish(*c.publisher, source, 0, 50);
  ASSERT_TRUE(wait_until([&] { return c.publisher->status().acked_through == 50; }, 20s)) << log.text();

  kafka.broker_down(2);
  publish(*c.publisher, source, 50, 100);
  std::this_thread::sleep_for(3s);
  // Nothing past the outage reached the brokers; it all waits in the spool.
  EXPECT_EQ(c.publisher->status().acked_through, 50u);
  EXPECT_EQ(c.publisher->status().pending_batches, 50u);
  kafka.broker_up(2);
  publish(*c.publisher, source, 100, kBatches);
  ASSERT_TRUE(testing::finished_in_time(c.publisher->finish(trailer_of(kBatches), 60s))) << log.text();
  ASSERT_TRUE(wait_until([&] { return sink.finished(c.id); }, 60s)) << log.text();
  ASSERT_TRUE(sink.stop()) << log.text();
  const auto s = *sink.summary(c.id);
  EXPECT_EQ(s.batches, kBatches) << log.text();
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(s.file), source, kBatches));
  EXPECT_EQ(c.publisher->status().pending_batches, 0u);
  EXPECT_GT(c.publisher->status().failed, 0u) << "the outage expired deliveries, so the resend path ran";
  EXPECT_EQ(sink->stats().rejected, 0u);
}

TEST(KafkaMock, ASinkStartedAgainOnItsDirectoryStoresNothingTwice) {
  MockKafka kafka(3);
  kafka.create_topics("events", 2);
  TempDir dir;
  LogLines log;
  constexpr std::uint64_t kBatches = 80;
  Collector c = make_collector(kafka, "events", dir, "host-a", log);
  SyntheticSource source(3, 30);
  publish(*c.publisher, source, 0, 40, 0us);
  ASSERT_TRUE(wait_until([&] { return c.publisher->status().acked_through == 40; }, 20s)) << log.text();
  {
    // The first sink stores the first 40, then goes away before the recording ends.
    RunningSink first(sink_options(kafka, "events", dir.file("sink"), "sinks", log));
    ASSERT_TRUE(wait_until([&] { auto s = first.summary(c.id); return s && s->batches == 40; }, 30s)) << log.text();
    ASSERT_TRUE(first.stop());
  }
  publish(*c.publisher, source, 40, kBatches, 0us);
  ASSERT_TRUE(testing::finished_in_time(c.publisher->finish(trailer_of(kBatches), 30s))) << log.text();

  // A new group reads the topic from its beginning: every one of the first 40 comes again and is dropped
  // because the directory holds it; the last 40 are stored, once.
  RunningSink second(sink_options(kafka, "events", dir.file("sink"), "replay", log));
  ASSERT_TRUE(wait_until([&] { return second.finished(c.id); }, 30s)) << log.text();
  ASSERT_TRUE(second.stop());
  EXPECT_EQ(second->stats().duplicates, 40u);
  EXPECT_EQ(second->stats().batches, 40u);
  EXPECT_EQ(second->stats().records, 40u * 30);
  EXPECT_EQ(second->stats().compressed_bytes, source.compressed_bytes(40, kBatches)) << "only what it stored itself";
  const auto s = *second.summary(c.id);
  EXPECT_EQ(s.batches, kBatches);
  EXPECT_EQ(s.compressed_bytes, source.compressed_bytes(0, kBatches)) << "the first 40 counted from the file";
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(s.file), source, kBatches));
  EXPECT_EQ(log.count("resuming " + dir.file("sink") + "/" + c.id + ".data with 40 batches"), 1u) << log.text();

  // A third sink on the same directory after the recording ended: everything is a duplicate, the trailer
  // is ignored, and no new piece is started.
  RunningSink third(sink_options(kafka, "events", dir.file("sink"), "replay-again", log));
  ASSERT_TRUE(wait_until([&] { return third->stats().messages == kBatches + 1; }, 30s)) << log.text();
  ASSERT_TRUE(third.stop());
  EXPECT_EQ(third->stats().duplicates, kBatches);
  EXPECT_EQ(third->stats().batches, 0u);
  EXPECT_EQ(third->stats().compressed_bytes, 0u);
  EXPECT_EQ(third->stats().rejected, 0u) << log.text();
  EXPECT_FALSE(std::filesystem::exists(s.file + ".1")) << "a finished recording is not reopened";
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(s.file), source, kBatches));
}

TEST(KafkaMock, AMemberOfTheSameGroupGoesOnFromTheCommittedOffsets) {
  MockKafka kafka(3);
  kafka.create_topics("events", 2);
  TempDir dir;
  LogLines log;
  Collector c = make_collector(kafka, "events", dir, "host-a", log);
  SyntheticSource source(4, 30);
  publish(*c.publisher, source, 0, 30, 0us);
  {
    RunningSink first(sink_options(kafka, "events", dir.file("sink"), "sinks", log));
    ASSERT_TRUE(wait_until([&] { auto s = first.summary(c.id); return s && s->batches == 30; }, 30s)) << log.text();
    ASSERT_TRUE(first.stop());
    EXPECT_GE(first->stats().commits, 1u);
  }
  publish(*c.publisher, source, 30, 60, 0us);
  ASSERT_TRUE(testing::finished_in_time(c.publisher->finish(trailer_of(60), 30s))) << log.text();
  RunningSink second(sink_options(kafka, "events", dir.file("sink"), "sinks", log));
  ASSERT_TRUE(wait_until([&] { return second.finished(c.id); }, 30s)) << log.text();
  ASSERT_TRUE(second.stop());
  EXPECT_EQ(second->stats().messages, 31u) << "only what the first member had not committed";
  EXPECT_EQ(second->stats().duplicates, 0u);
  EXPECT_EQ(second->stats().batches, 30u);
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(second.summary(c.id)->file), source, 60));
}

// A producer that writes whatever the test wants into the topic.
class RawProducer {
 public:
  explicit RawProducer(const std::string& bootstraps) {
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char why[512];
    rd_kafka_conf_set(conf, "bootstrap.servers", bootstraps.c_str(), why, sizeof(why));
    rk_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
  }
  ~RawProducer() { rd_kafka_destroy(rk_); }
  void send(const std::string& topic, const std::string& key, const std::string& value,
            const std::vector<std::pair<std::string, std::string>>& headers) {
    rd_kafka_headers_t* h = rd_kafka_headers_new(headers.size());
    for (const auto& [name, v] : headers) rd_kafka_header_add(h, name.c_str(), -1, v.data(), v.size());
    ASSERT_EQ(rd_kafka_producev(rk_, RD_KAFKA_V_TOPIC(topic.c_str()), RD_KAFKA_V_KEY(key.data(), key.size()),
                                RD_KAFKA_V_VALUE(const_cast<char*>(value.data()), value.size()),
                                RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_HEADERS(h), RD_KAFKA_V_END),
              RD_KAFKA_RESP_ERR_NO_ERROR);
    ASSERT_EQ(rd_kafka_flush(rk_, 10000), RD_KAFKA_RESP_ERR_NO_ERROR);
  }

 private:
  rd_kafka_t* rk_ = nullptr;
};

TEST(KafkaMock, BadMessagesAreSkippedCountedAndNamedAndDuplicatesStoredOnce) {
  MockKafka kafka(3);
  kafka.create_topics("events", 1);
  TempDir dir;
  LogLines log;
  Collector c = make_collector(kafka, "events", dir, "host-a", log);
  SyntheticSource source(5, 20);
  publish(*c.publisher, source, 0, 10, 0us);
  ASSERT_TRUE(wait_until([&] { return c.publisher->status().acked_through == 10; }, 20s)) << log.text();

  const std::string schema = kafka_schema_id(testing::synthetic_header("rec", "host-a").SerializeAsString());
  auto headers = [&](const std::string& type, const std::string& format) {
    return std::vector<std::pair<std::string, std::string>>{{"perfstream-type", type},
                                                            {"perfstream-format", format},
                                                            {"perfstream-schema", schema},
                                                            {"perfstream-collector", c.id}};
  };
  RawProducer raw(kafka.bootstraps());
  raw.send("events", "host-a", "plain text, no headers", {});
  raw.send("events", "host-a", source.batch(3).compressed, headers("batch", "4"));
  raw.send("events", "host-a", "not zstd at all", headers("batch", "1"));
  raw.send("events", "host-a", source.batch(4).compressed, headers("snapshot", "1"));
  raw.send("events", "host-a", source.batch(5).compressed, headers("batch", "1"));  // a duplicate: dropped
  auto unknown = headers("batch", "1");
  unknown[2].second = std::string(32, 'f');
  unknown[3].second = "host-z-rec";
  raw.send("events", "host-z", source.batch(0).compressed, unknown);  // no such TraceHeader published

  publish(*c.publisher, source, 10, 20, 0us);
  ASSERT_TRUE(testing::finished_in_time(c.publisher->finish(trailer_of(20), 30s))) << log.text();
  auto options = sink_options(kafka, "events", dir.file("sink"), "sinks", log);
  options.header_timeout = 3s;
  RunningSink sink(options);
  ASSERT_TRUE(wait_until([&] { return sink.finished(c.id); }, 30s)) << log.text();
  ASSERT_TRUE(sink.stop());
  EXPECT_EQ(sink->stats().rejected, 5u) << log.text();
  EXPECT_EQ(sink->stats().duplicates, 1u);
  EXPECT_EQ(sink->stats().batches, 20u);
  EXPECT_TRUE(testing::holds_exactly_once(testing::read_recording(sink.summary(c.id)->file), source, 20));
  EXPECT_EQ(log.count("skipping events[0]@10: not a perfstream message"), 1u) << log.text();
  EXPECT_EQ(log.count("skipping events[0]@11: trace format version 4; this sink reads versions 1 to 3"), 1u)
      << log.text();
  EXPECT_EQ(log.count("skipping events[0]@12: the batch does not decompress"), 1u) << log.text();
  EXPECT_EQ(log.count("skipping events[0]@13: unknown perfstream-type 'snapshot'"), 1u) << log.text();
  EXPECT_EQ(log.count("skipping events[0]@15: no TraceHeader with schema id ffffffff"), 1u) << log.text();
  EXPECT_EQ(log.count("(read to its end)"), 1u) << log.text();
  EXPECT_FALSE(sink.summary("host-z-rec")) << "nothing is opened for a recording without its header";
}

}  // namespace
}  // namespace perfstream
