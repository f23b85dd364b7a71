// The Kafka flags `stream` and `sink` share: librdkafka properties passed through to the client.
//   -X KEY=VALUE           one property (repeatable), as kcat takes them
//   --kafka-config FILE    KEY=VALUE lines; -X given on the command line win over the file
#pragma once

#include "collector/cli/options.hpp"
#include "collector/kafka/kafka_config.hpp"

namespace perfstream::cli {

void add_kafka_flags(ArgParser& parser);
// The file's properties, then the -X ones, in order; errors name the file and line or the flag.
Result<KafkaProperties> kafka_properties_from(const ArgParser& parser);

}  // namespace perfstream::cli
