// MockKafka: librdkafka's built-in mock cluster, for tests: several brokers in this process, each
// listening on a loopback port, speaking the real Kafka protocol (produce, fetch, consumer groups, offset
// commits, idempotent producers). Clients in this process or in a subprocess reach it through
// bootstraps(). A broker can be taken down and brought back to test outages. Test-only.
#pragma once

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#include <stdexcept>
#include <string>

namespace perfstream::testing {

class MockKafka {
 public:
  explicit MockKafka(int brokers = 3) {
    // librdkafka hosts a mock cluster in a client handle; this one only holds it.
    rd_kafka_conf_t* conf = rd_kafka_conf_new();
    char why[512];
    rd_kafka_conf_set(conf, "log_level", "0", why, sizeof(why));
    host_ = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof(why));
    if (!host_) throw std::runtime_error(std::string("mock Kafka: ") + why);
    cluster_ = rd_kafka_mock_cluster_new(host_, brokers);
    if (!cluster_) throw std::runtime_error("mock Kafka: no cluster");
  }
  ~MockKafka() {
    rd_kafka_mock_cluster_destroy(cluster_);
    rd_kafka_destroy(host_);
  }
  MockKafka(const MockKafka&) = delete;
  MockKafka& operator=(const MockKafka&) = delete;

  std::string bootstraps() const { return rd_kafka_mock_cluster_bootstraps(cluster_); }
  std::string url(const std::string& topic) const { return "kafka://" + bootstraps() + "/" + topic; }

  // A topic and its companion TOPIC.headers, as an operator would create them.
  void create_topics(const std::string& topic, int partitions, int replication = 3) {
    check(rd_kafka_mock_topic_create(cluster_, topic.c_str(), partitions, replication), topic);
    check(rd_kafka_mock_topic_create(cluster_, (topic + ".headers").c_str(), 1, replication), topic + ".headers");
  }
  // Broker ids are 1..brokers.
  void broker_down(int id) { check(rd_kafka_mock_broker_set_down(cluster_, id), "broker down"); }
  void broker_up(int id) { check(rd_kafka_mock_broker_set_up(cluster_, id), "broker up"); }
  void set_leader(const std::string& topic, int partition, int broker) {
    check(rd_kafka_mock_partition_set_leader(cluster_, topic.c_str(), partition, broker), "set leader");
  }
  rd_kafka_mock_cluster_t* cluster() const { return cluster_; }

 private:
  static void check(rd_kafka_resp_err_t err, const std::string& what) {
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      throw std::runtime_error("mock Kafka: " + what + ": " + rd_kafka_err2str(err));
    }
  }
  rd_kafka_t* host_ = nullptr;
  rd_kafka_mock_cluster_t* cluster_ = nullptr;
};

}  // namespace perfstream::testing
