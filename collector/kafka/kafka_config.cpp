#include "collector/kafka/kafka_config.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>

namespace perfstream {

namespace {

bool valid_topic(std::string_view topic) {
  if (topic.empty() || topic.size() > 249 || topic == "." || topic == "..") return false;
  return std::all_of(topic.begin(), topic.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

// HOST, HOST:PORT, [V6], [V6]:PORT -> "HOST:PORT"; empty on error, with *why.
std::string parse_broker(std::string_view text, std::string* why) {
  std::string host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) {
      *why = "'" + std::string(text) + "': no closing ']'";
      return {};
    }
    host = std::string(text.substr(0, close + 1));
    std::string_view after = text.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        *why = "'" + std::string(text) + "': expected ':PORT' after ']'";
        return {};
      }
      port = after.substr(1);
    }
  } else {
    const auto colon = text.find(':');
    host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) port = text.substr(colon + 1);
    if (port.find(':') != std::string_view::npos) {
      *why = "'" + std::string(text) + "': an IPv6 address goes in brackets, [::1]:9092";
      return {};
    }
  }
  if (host.empty() || host == "[]") {
    *why = "'" + std::string(text) + "': no host";
    return {};
  }
  for (char c : host) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_' || c == ':' || c == '[' ||
          c == ']')) {
      *why = "'" + std::string(text) + "': '" + std::string(1, c) + "' is not allowed in a host name";
      return {};
    }
  }
  if (port.empty()) return host + ":9092";
  unsigned value = 0;
  for (char c : port) {
    if (!std::isdigit(static_cast<unsigned char>(c)) || value > 65535) {
      *why = "'" + std::string(text) + "': the port is not a number from 1 to 65535";
      return {};
    }
    value = value * 10 + static_cast<unsigned>(c - '0');
  }
  if (value == 0 || value > 65535) {
    *why = "'" + std::string(text) + "': the port is not a number from 1 to 65535";
    return {};
  }
  return host + ":" + std::to_string(value);
}

}  // namespace

Result<KafkaAddress> KafkaAddress::parse(std::string_view text) {
  const std::string shown(text);
  if (!is_kafka(text)) return Error("'" + shown + "': a Kafka address is kafka://BROKER[,BROKER...]/TOPIC");
  std::string_view rest = text.substr(8);
  const auto slash = rest.find('/');
  if (slash == std::string_view::npos) return Error("'" + shown + "': no topic (kafka://BROKER[,BROKER...]/TOPIC)");
  std::string_view brokers = rest.substr(0, slash);
  std::string_view topic = rest.substr(slash + 1);
  if (!valid_topic(topic)) {
    return Error("'" + shown + "': the topic '" + std::string(topic) +
                 "' is not a Kafka topic name (1-249 of letters, digits, '.', '_', '-')");
  }
  KafkaAddress address;
  address.topic = std::string(topic);
  if (brokers.empty()) return Error("'" + shown + "': no broker before the topic");
  while (true) {
    const auto comma = brokers.find(',');
    std::string why;
    std::string broker = parse_broker(brokers.substr(0, comma), &why);
    if (broker.empty()) return Error("'" + shown + "': broker " + why);
    address.brokers.push_back(std::move(broker));
    if (comma == std::string_view::npos) break;
    brokers = brokers.substr(comma + 1);
  }
  return address;
}

std::string KafkaAddress::bootstrap_servers() const {
  std::string out;
  for (const auto& b : brokers) out += (out.empty() ? "" : ",") + b;
  return out;
}

std::string KafkaAddress::to_string() const { return "kafka://" + bootstrap_servers() + "/" + topic; }

Result<std::pair<std::string, std::string>> parse_kafka_property(const std::string& text) {
  const auto eq = text.find('=');
  if (eq == std::string::npos || eq == 0) {
    return Error("'" + text + "': a librdkafka property is KEY=VALUE (e.g. security.protocol=SASL_SSL)");
  }
  auto trim = [](std::string s) {
    const auto b = s.find_first_not_of(" \t\r");
    const auto e = s.find_last_not_of(" \t\r");
    return b == std::string::npos ? std::string() : s.substr(b, e - b + 1);
  };
  std::string key = trim(text.substr(0, eq));
  if (key.empty()) return Error("'" + text + "': a librdkafka property is KEY=VALUE");
  return std::make_pair(key, trim(text.substr(eq + 1)));
}

Result<KafkaProperties> read_kafka_properties(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error::from_errno("reading Kafka settings from " + path, errno);
  KafkaProperties out;
  std::string line;
  for (unsigned number = 1; std::getline(in, line); ++number) {
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    auto property = parse_kafka_property(line.substr(first));
    if (!property) return Error(path + ":" + std::to_string(number) + ": " + property.error().message());
    out.push_back(std::move(*property));
  }
  return out;
}

namespace {

// librdkafka's own log lines repeat what its error callback reports (which perfstream logs, at most one
// line per 10 s), once per reconnect attempt: only critical ones go to stderr, unless the user asked for
// librdkafka's debug contexts (-X debug=...), and then everything does.
void critical_only(const rd_kafka_t*, int level, const char* facility, const char* line) {
  if (level <= 2) std::fprintf(stderr, "perfstream: librdkafka %s: %s\n", facility, line);
}

}  // namespace

Result<KafkaConf> make_kafka_conf(const KafkaProperties& defaults, const KafkaProperties& properties,
                                  const std::vector<FixedKafkaProperty>& fixed) {
  KafkaConf conf(rd_kafka_conf_new());
  const bool debug = std::any_of(properties.begin(), properties.end(), [](const auto& p) { return p.first == "debug"; });
  if (!debug) rd_kafka_conf_set_log_cb(conf.get(), &critical_only);
  char why[512];
  for (const auto& [key, value] : defaults) {
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), why, sizeof(why)) != RD_KAFKA_CONF_OK) {
      return Error("Kafka setting " + key + "=" + value + ": " + why);
    }
  }
  for (const auto& [key, value] : properties) {
    for (const auto& f : fixed) {
      if (f.name != key) continue;
      const std::string& name = key;  // (a structured binding cannot be captured before C++20 in clang 14)
      auto def = std::find_if(defaults.begin(), defaults.end(), [&name](const auto& d) { return d.first == name; });
      if (def == defaults.end() || def->second != value) {
        return Error("Kafka setting " + key + "=" + value + " is not allowed: " + f.why);
      }
    }
    if (rd_kafka_conf_set(conf.get(), key.c_str(), value.c_str(), why, sizeof(why)) != RD_KAFKA_CONF_OK) {
      return Error("Kafka setting " + key + "=" + value + ": " + why);
    }
  }
  return conf;
}

std::string kafka_library_version() { return std::string("librdkafka ") + rd_kafka_version_str(); }

}  // namespace perfstream
