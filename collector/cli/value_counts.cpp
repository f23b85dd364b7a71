#include "collector/cli/value_counts.hpp"

#include <algorithm>

#include "collector/cli/render.hpp"

namespace perfstream::cli {
namespace {

// A string printed bare in a table when nothing in it would make the column ambiguous.
bool needs_quotes(const std::string& quoted) {
  if (quoted.size() <= 2) return true;  // the empty string shows as ""
  return quoted.find_first_of(" \\", 1) != std::string::npos || quoted.find('"', 1) != quoted.size() - 1;
}

}  // namespace

ValueCounts::ValueCounts(std::vector<std::string> keys) : keys_(std::move(keys)) {
  for (const auto& key : keys_) needs_fields_ = needs_fields_ || (key != "event" && key != "cpu");
}

const ValueCounts::SchemaPlan& ValueCounts::plan_of(const v1::EventSchema* schema) {
  auto it = plans_.find(schema);
  if (it != plans_.end()) return it->second;
  SchemaPlan plan{FieldDisplay(*schema, false), std::vector<int>(keys_.size(), -1)};
  for (std::size_t k = 0; k < keys_.size(); ++k) {
    if (keys_[k] == "event" || keys_[k] == "cpu") continue;
    for (int f = 0; f < schema->fields_size(); ++f) {
      if (schema->fields(f).name() == keys_[k]) {
        plan.field_of_key[k] = f;
        break;
      }
    }
  }
  return plans_.emplace(schema, std::move(plan)).first->second;
}

void ValueCounts::add(const v1::EventSchema* schema, const std::string& event, std::uint32_t cpu,
                      std::span<const char> payload) {
  const SchemaPlan* plan = nullptr;
  if (schema != nullptr && needs_fields_) {
    plan = &plan_of(schema);
    decode_payload_into(*schema, payload, values_);
  }
  key_.clear();
  for (std::size_t k = 0; k < keys_.size(); ++k) {
    if (k != 0) key_ += '\n';
    if (keys_[k] == "event") {
      key_ += render::json_string(event);
    } else if (keys_[k] == "cpu") {
      key_ += std::to_string(cpu);
    } else if (plan == nullptr || plan->field_of_key[k] < 0) {
      key_ += "null";
    } else {
      plan->display.append_json(key_, values_, static_cast<std::size_t>(plan->field_of_key[k]));
    }
  }
  auto [it, added] = rows_.try_emplace(key_);
  Row& row = it->second;
  ++row.records;
  row.payload_bytes += payload.size();
  if (!added) return;
  // A new value: its renderings, made once.
  for (std::size_t k = 0; k < keys_.size(); ++k) {
    std::string text, json;
    if (keys_[k] == "event") {
      text = event;
      json = render::json_string(event);
    } else if (keys_[k] == "cpu") {
      json = std::to_string(cpu);
      text = cpu == 0xffffffffu ? std::string("ring") : json;  // a ring buffer's records, as stats shows them
    } else if (const int f = plan != nullptr ? plan->field_of_key[k] : -1; f < 0 || values_[f].missing) {
      text = "-";
      json = "null";
    } else {
      const auto i = static_cast<std::size_t>(f);
      plan->display.append_json(json, values_, i);
      if (!plan->display.append_shown(text, values_, i)) {
        plan->display.append_text(text, values_, i);
        if (values_[i].type == v1::Field::STRING && !needs_quotes(text)) text = text.substr(1, text.size() - 2);
      }
    }
    row.text.push_back(std::move(text));
    row.json.push_back(std::move(json));
  }
}

std::vector<ValueCounts::Row> ValueCounts::sorted() const {
  std::vector<Row> rows;
  rows.reserve(rows_.size());
  for (const auto& [key, row] : rows_) rows.push_back(row);
  std::sort(rows.begin(), rows.end(), [](const Row& a, const Row& b) {
    if (a.records != b.records) return a.records > b.records;
    if (a.payload_bytes != b.payload_bytes) return a.payload_bytes > b.payload_bytes;
    return a.json < b.json;
  });
  return rows;
}

}  // namespace perfstream::cli
