#include "collector/cli/kafka_flags.hpp"

namespace perfstream::cli {

void add_kafka_flags(ArgParser& parser) {
  parser
      .option("kafka-property", 'X', "KEY=VALUE",
              "with kafka://: a librdkafka setting, e.g. -X security.protocol=SASL_SSL (repeatable)")
      .option("kafka-config", 0, "FILE", "with kafka://: librdkafka settings, KEY=VALUE per line");
}

Result<KafkaProperties> kafka_properties_from(const ArgParser& parser) {
  KafkaProperties out;
  if (auto file = parser.value("kafka-config")) {
    auto from_file = read_kafka_properties(*file);
    if (!from_file) return Error("--kafka-config: " + from_file.error().message());
    out = std::move(*from_file);
  }
  for (const auto& text : parser.values("kafka-property")) {
    auto property = parse_kafka_property(text);
    if (!property) return Error("-X: " + property.error().message());
    out.push_back(std::move(*property));
  }
  return out;
}

}  // namespace perfstream::cli
