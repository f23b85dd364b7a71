// Fuzzes the parsers of command-line text: Endpoint::parse, KafkaAddress::parse, parse_kafka_property,
// CpuSet::parse, RingSize::parse, parse_bytes, parse_duration_ms, parse_count, and ArgParser::parse with a
// fixed spec on the input split at NUL bytes. Invariants: what parses prints back to text that parses to
// the same value (endpoints, Kafka addresses, CPU lists); the scaled numbers are what their text says;
// ArgParser only returns flags it declared.
#include <string>
#include <vector>

#include "collector/cli/options.hpp"
#include "collector/kafka/kafka_config.hpp"
#include "collector/kernel/cpu_set.hpp"
#include "collector/kernel/perf_event_array.hpp"
#include "collector/transport/endpoint.hpp"
#include "fuzz/fuzz_input.hpp"

using namespace perfstream;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::uint64_t sum = 0;

  if (auto e = Endpoint::parse(text)) {
    auto again = Endpoint::parse(e->to_string());
    FUZZ_CHECK(static_cast<bool>(again));
    FUZZ_CHECK(again->kind == e->kind && again->host == e->host && again->port == e->port && again->path == e->path);
    sum += e->is_loopback();
  }
  if (auto k = KafkaAddress::parse(text)) {
    FUZZ_CHECK(!k->brokers.empty() && !k->topic.empty());
    auto again = KafkaAddress::parse(k->to_string());
    FUZZ_CHECK(static_cast<bool>(again));
    FUZZ_CHECK(again->brokers == k->brokers && again->topic == k->topic);
    sum += k->brokers.size();
  }
  if (auto property = parse_kafka_property(text)) {
    FUZZ_CHECK(!property->first.empty());
    sum += property->second.size();
  }
  if (auto cpus = CpuSet::parse(text)) {
    auto again = CpuSet::parse(cpus->to_string());
    FUZZ_CHECK(static_cast<bool>(again));
    FUZZ_CHECK(*again == *cpus);
    sum += cpus->size();
  }
  if (auto ring = RingSize::parse(text)) {
    FUZZ_CHECK(ring->value > 0);
    sum += ring->value;
  }
  if (auto b = parse_bytes("size", text)) sum += *b;
  if (auto d = parse_duration_ms("duration", text)) sum += *d;
  if (auto c = parse_count("count", text)) sum += *c;

  std::vector<std::string> args;
  std::size_t start = 0;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    if (i == text.size() || text[i] == '\0') {
      args.push_back(text.substr(start, i - start));
      start = i + 1;
    }
  }
  ArgParser parser("record", "perfstream record [flags] [-- COMMAND...]");
  parser.flag("verbose", 'v', "say more")
      .flag("all-cpus", 'a', "every CPU")
      .option("output", 'o', "FILE", "where to write")
      .option("probe", 'p', "NAME", "a probe")
      .option("duration", 'd', "TIME", "how long")
      .option("cpus", 'C', "LIST", "which CPUs");
  if (parser.parse(args)) {
    for (const char* name : {"verbose", "all-cpus", "output", "probe", "duration", "cpus"}) {
      sum += parser.has(name) + parser.values(name).size();
      if (auto v = parser.value(name)) sum += v->size();
    }
    FUZZ_CHECK(!parser.has("undeclared"));
    sum += parser.positionals().size() + parser.rest().size();
  }
  sum += parser.help().size();
  perfstream::fuzz::keep(sum);
  return 0;
}
