#include "collector/export/csv_export.hpp"

#include <map>

namespace perfstream::exporter {
namespace {

std::string schema_name(const v1::EventSchema& s) { return !s.name().empty() ? s.name() : s.type_name(); }

void append_hex(std::string& out, std::string_view bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (char c : bytes) {
    out += kDigits[static_cast<unsigned char>(c) >> 4];
    out += kDigits[static_cast<unsigned char>(c) & 15];
  }
}

}  // namespace

void append_csv_cell(std::string& line, std::string_view cell) {
  if (cell.find_first_of(",\"\r\n") == std::string_view::npos) {
    line.append(cell);
    return;
  }
  line += '"';
  for (char c : cell) {
    if (c == '"') line += '"';
    line += c;
  }
  line += '"';
}

CsvExporter::CsvExporter(recording::RecordingReader& reader, const recording::MergeOptions& merge, std::string event,
                         std::ostream& out)
    : reader_(reader), merge_options_(merge), event_(std::move(event)), out_(out) {}

CsvExporter::~CsvExporter() = default;

Result<std::uint64_t> CsvExporter::run() {
  const v1::EventSchema* first = nullptr;
  std::string known;
  for (const auto& s : reader_.header().events()) {
    if (schema_name(s) == event_ && first == nullptr) first = &s;
    known += (known.empty() ? "" : ", ") + schema_name(s);
  }
  if (first == nullptr) {
    return Error("--event " + event_ + ": the recording has no such event (it has: " +
                 (known.empty() ? std::string("none") : known) + ")");
  }
  // Columns from the first header; a later piece's schema is matched to them by field name.
  std::vector<std::string> columns;
  std::string line = "time_ns,cpu";
  for (const auto& f : first->fields()) {
    columns.push_back(f.name());
    line += ',';
    append_csv_cell(line, f.name());
  }
  line += "\r\n";
  out_ << line;
  std::map<const v1::EventSchema*, std::vector<int>> column_of;  // schema -> field index per column (-1 none)
  std::vector<FieldValue> values;
  std::uint64_t rows = 0;
  merge_ = std::make_unique<recording::TimeOrderedReader>(reader_, merge_options_);
  recording::TimeOrderedReader::Entry e;
  while (merge_->next(e)) {
    if (e.is_lost) continue;
    const auto payload = e.payload();
    const v1::EventSchema* schema = schema_for_payload(reader_.pieces()[e.piece].header.events(), payload);
    if (schema == nullptr || schema_name(*schema) != event_) continue;
    auto [it, added] = column_of.try_emplace(schema);
    if (added) {
      for (const auto& c : columns) {
        int at = -1;
        for (int i = 0; i < schema->fields_size(); ++i) {
          if (schema->fields(i).name() == c) at = i;
        }
        it->second.push_back(at);
      }
    }
    decode_payload_into(*schema, payload, values);
    line = std::to_string(e.time_ns) + ',' + std::to_string(e.cpu);
    for (int at : it->second) {
      line += ',';
      if (at < 0 || values[static_cast<std::size_t>(at)].missing) continue;
      const FieldValue& v = values[static_cast<std::size_t>(at)];
      switch (v.type) {
        case v1::Field::SIGNED: line += std::to_string(v.signed_value); break;
        case v1::Field::UNSIGNED: line += std::to_string(v.unsigned_value); break;
        case v1::Field::STRING: append_csv_cell(line, v.text); break;
        default: append_hex(line, v.text); break;
      }
    }
    line += "\r\n";
    out_ << line;
    ++rows;
  }
  out_.flush();
  if (!out_) return Error("writing the CSV failed");
  return rows;
}

}  // namespace perfstream::exporter
