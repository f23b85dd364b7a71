// ValueCounts: `stats --by KEY[,KEY]`: records and payload bytes per distinct value of one or more keys, the
// way `perf report --sort comm,pid` counts samples per comm and pid.
//
// A key is "event" (the schema's name, "unknown" for a payload no schema fits), "cpu" (the CPU the record
// was read on), or the name of a field of the recording's schemas ("comm", "pid", "path", "filename", ...).
// A record whose event has no such field, or whose payload ends before it, counts under the missing value:
// "-" in text, null in JSON. Values are shown as `dump` shows them: a display hint's rendering where the
// field has one ("ENOENT", "O_RDONLY|O_CLOEXEC", argv words joined by spaces), else the plain value;
// strings in text are quoted only when they hold a space, a quote or a byte that needs escaping.
//
// Two records count under one row when every key renders the same in JSON (which is unambiguous), so
// memory grows with the number of distinct values, not with records. Rows come out by records, most first,
// then by payload bytes, then by value in byte order; ties are therefore stable from run to run.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "collector/cli/field_display.hpp"
#include "collector/decode/payload_schema.hpp"

namespace perfstream::cli {

class ValueCounts {
 public:
  struct Row {
    std::vector<std::string> text;  // each key's value as text shows it
    std::vector<std::string> json;  // each key's value as a JSON value
    std::uint64_t records = 0;
    std::uint64_t payload_bytes = 0;
  };

  explicit ValueCounts(std::vector<std::string> keys);

  const std::vector<std::string>& keys() const { return keys_; }

  // Counts one record: its schema (nullptr when none fits), its event's name, its CPU and its payload.
  void add(const v1::EventSchema* schema, const std::string& event, std::uint32_t cpu, std::span<const char> payload);

  // Every row, in the order the header describes.
  std::vector<Row> sorted() const;

 private:
  struct SchemaPlan {
    FieldDisplay display;
    std::vector<int> field_of_key;  // the schema field each key names, -1 for "event", "cpu" or none
  };
  const SchemaPlan& plan_of(const v1::EventSchema* schema);

  std::vector<std::string> keys_;
  bool needs_fields_ = false;  // a key names a field: payloads are decoded (not for event and cpu alone)
  std::map<const v1::EventSchema*, SchemaPlan> plans_;
  std::unordered_map<std::string, Row> rows_;  // by the keys' JSON renderings joined by '\n'
  std::vector<FieldValue> values_;             // scratch, reused for every record
  std::string key_, scratch_;
};

}  // namespace perfstream::cli
