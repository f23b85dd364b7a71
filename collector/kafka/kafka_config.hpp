// Kafka addresses and client settings, shared by the publisher (`stream --to kafka://`) and the consumer
// (`sink --from kafka://`).
//
// Address: kafka://BROKER[,BROKER...]/TOPIC, a broker being HOST, HOST:PORT or [IPv6]:PORT (port 9092 when
// left out); the topic follows Kafka's rules (1-249 of [A-Za-z0-9._-], not "." or ".."). Each recording's
// TraceHeader goes to the companion topic TOPIC.headers (see kafka_publisher.hpp).
//
// Settings: librdkafka properties given by the user (-X KEY=VALUE, --kafka-config FILE with KEY=VALUE
// lines, '#' comments) are passed through unchanged, so SASL, TLS and tuning options work as documented
// by librdkafka (CONFIGURATION.md). perfstream sets its defaults first and the user's values override
// them, except the few that would break its guarantees, which are refused with the reason.
#pragma once

#include <librdkafka/rdkafka.h>

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "collector/util/result.hpp"

namespace perfstream {

struct KafkaAddress {
  std::vector<std::string> brokers;  // HOST:PORT each
  std::string topic;

  static Result<KafkaAddress> parse(std::string_view text);
  static bool is_kafka(std::string_view text) { return text.substr(0, 8) == "kafka://"; }
  std::string bootstrap_servers() const;  // "b1:9092,b2:9092"
  std::string headers_topic() const { return topic + ".headers"; }
  std::string to_string() const;          // kafka://b1:9092,b2:9092/topic
};

using KafkaProperties = std::vector<std::pair<std::string, std::string>>;

// "KEY=VALUE" from -X; the error names the text.
Result<std::pair<std::string, std::string>> parse_kafka_property(const std::string& text);
// A file of KEY=VALUE lines; blank lines and lines starting with '#' are skipped. Errors name the line.
Result<KafkaProperties> read_kafka_properties(const std::string& path);

struct KafkaConfDeleter {
  void operator()(rd_kafka_conf_t* conf) const { rd_kafka_conf_destroy(conf); }
};
struct KafkaHandleDeleter {
  void operator()(rd_kafka_t* rk) const { rd_kafka_destroy(rk); }
};
using KafkaConf = std::unique_ptr<rd_kafka_conf_t, KafkaConfDeleter>;
using KafkaHandle = std::unique_ptr<rd_kafka_t, KafkaHandleDeleter>;

// A property the user may not change from perfstream's default, and why.
struct FixedKafkaProperty {
  std::string name;
  std::string why;
};

// A configuration: `defaults`, then the user's `properties`. A user property in `fixed` must keep the
// default's value, or the error says why. Errors name the property and librdkafka's reason.
Result<KafkaConf> make_kafka_conf(const KafkaProperties& defaults, const KafkaProperties& properties,
                                  const std::vector<FixedKafkaProperty>& fixed);

// librdkafka's version, for logs and `perfstream --version`-like output.
std::string kafka_library_version();

}  // namespace perfstream
