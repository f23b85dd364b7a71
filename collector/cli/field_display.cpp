#include "collector/cli/field_display.hpp"

#include <cstdint>

#include "collector/cli/render.hpp"

namespace perfstream::cli {

using hints::Hint;

namespace {

bool is_integer(v1::Field::Type type) { return type == v1::Field::SIGNED || type == v1::Field::UNSIGNED; }

int field_index(const v1::EventSchema& schema, const std::string& name) {
  for (int i = 0; i < schema.fields_size(); ++i) {
    if (schema.fields(i).name() == name) return i;
  }
  return -1;
}

// Whether the hint can show a field of this type; a hint on the wrong type is ignored, not trusted.
bool fits(Hint hint, const v1::Field& f) {
  if (hints::hint_wants_integer(hint)) return is_integer(f.type());
  switch (hint) {
    case Hint::Ip: return f.type() == v1::Field::BYTES || (is_integer(f.type()) && f.size() == 4);
    case Hint::Argv:
    case Hint::PathArgv: return f.type() == v1::Field::BYTES || f.type() == v1::Field::STRING;
    default: return true;
  }
}

}  // namespace

FieldDisplay::FieldDisplay(const v1::EventSchema& schema, bool raw) {
  fields_.resize(static_cast<std::size_t>(schema.fields_size()));
  for (int i = 0; i < schema.fields_size(); ++i) {
    const v1::Field& f = schema.fields(i);
    Plan& p = fields_[i];
    p.size = f.size();
    if (f.name().find("flags") != std::string::npos) p.style = IntStyle::Hex;
    else if (f.name().find("mode") != std::string::npos) p.style = IntStyle::Octal;
    else p.style = f.type() == v1::Field::SIGNED ? IntStyle::Signed : IntStyle::Unsigned;
    if (raw) continue;
    // What text left out before hints existed, kept so that old recordings read the same.
    p.hidden_text = f.name() == "kind" || f.name().rfind("reserved", 0) == 0;
    for (const auto& other : schema.fields()) p.hidden_text = p.hidden_text || other.length_field() == f.name();
    p.hint = hints::parse_hint(f.hint());
    if (!fits(p.hint, f)) p.hint = Hint::Unknown;
    if (p.hint == Hint::Hidden) p.hidden_text = p.hidden_json = true;
    if (p.hint == Hint::Enum) p.field = &f;
    if (p.hint == Hint::Ip) {
      if (auto it = f.hint_args().find("port"); it != f.hint_args().end()) p.port = field_index(schema, it->second);
      if (auto it = f.hint_args().find("family"); it != f.hint_args().end()) p.family = field_index(schema, it->second);
      if (p.port >= 0 && !is_integer(schema.fields(p.port).type())) p.port = -1;
      if (p.family >= 0 && !is_integer(schema.fields(p.family).type())) p.family = -1;
    }
  }
  // A port shown after its address is not shown again on its own in text (JSON keeps it, as a number).
  for (const Plan& p : fields_) {
    if (p.port >= 0) fields_[p.port].hidden_text = true;
  }
}

bool FieldDisplay::address(std::string& out, const std::vector<FieldValue>& values, std::size_t i) const {
  const Plan& p = fields_[i];
  const FieldValue& v = values[i];
  std::string_view bytes = v.text;
  std::string from_int;
  if (is_integer(v.type)) {
    from_int = hints::int_bytes(v.unsigned_value, p.size);
    bytes = from_int;
  }
  if (p.family >= 0 && !values[p.family].missing) {
    const std::uint64_t family = values[p.family].unsigned_value;
    if (family == 2 && bytes.size() >= 4) bytes = bytes.substr(0, 4);   // AF_INET
    else if (family != 10 || bytes.size() != 16) return false;          // AF_INET6, or nothing to show
  }
  std::optional<std::uint64_t> port;
  if (p.port >= 0 && !values[p.port].missing) port = values[p.port].unsigned_value;
  return hints::append_ip(out, bytes, port);
}

FieldDisplay::Shown FieldDisplay::show(std::string& s, const std::vector<FieldValue>& values, std::size_t i,
                                       bool text) const {
  const Plan& p = fields_[i];
  const FieldValue& v = values[i];
  if (v.missing) return Shown::None;
  const std::int64_t sv = hints::sign_extend(v.unsigned_value, p.size);
  switch (p.hint) {
    case Hint::OpenFlags:
      hints::append_open_flags(s, static_cast<std::uint32_t>(v.unsigned_value));
      return Shown::Symbol;
    case Hint::Mode:
      hints::append_mode(s, v.unsigned_value);
      return Shown::Symbol;
    case Hint::DirFd:
      if (sv != -100) return Shown::None;
      s += "AT_FDCWD";
      return Shown::Symbol;
    case Hint::Errno:
      // INT64_MIN has no positive counterpart: it is no errno, and negating it would overflow.
      if (const char* name = sv < 0 && sv != INT64_MIN ? hints::errno_name(-sv) : nullptr) {
        s += name;
        return Shown::Symbol;
      }
      render::append_signed(s, sv);
      return Shown::Number;
    case Hint::TaskState:
      hints::append_task_state(s, sv);
      return Shown::Symbol;
    case Hint::Signal:
      if (hints::append_signal(s, sv)) return Shown::Symbol;
      render::append_signed(s, sv);
      return Shown::Number;
    case Hint::WaitStatus:
      if ((v.unsigned_value & 0x7f) == 0) {
        render::append_number(s, hints::exit_code_of(v.unsigned_value));
        return Shown::Number;
      }
      return hints::append_wait_signal(s, v.unsigned_value) ? Shown::Symbol : Shown::None;
    case Hint::TcpState:
    case Hint::AddressFamily: {
      const char* name = p.hint == Hint::TcpState ? hints::tcp_state_name(sv) : hints::address_family_name(sv);
      if (name == nullptr) return Shown::None;
      s += name;
      return Shown::Symbol;
    }
    case Hint::Bytes:
      if (!text) return Shown::None;
      hints::append_bytes(s, v.unsigned_value);
      return Shown::Symbol;
    case Hint::DurationNs:
      if (!text) return Shown::None;
      hints::append_duration(s, sv);
      return Shown::Symbol;
    case Hint::Hex:
      if (!text) return Shown::None;
      s += "0x";
      render::append_number(s, v.unsigned_value, 16);
      return Shown::Symbol;
    case Hint::Ip:
      return address(s, values, i) ? Shown::Symbol : Shown::None;
    case Hint::Enum: {
      const std::int64_t value = v.type == v1::Field::SIGNED ? sv : static_cast<std::int64_t>(v.unsigned_value);
      for (const auto& e : p.field->enumerators()) {
        if (e.value() != value) continue;
        s += e.name();
        return Shown::Symbol;
      }
      return Shown::None;
    }
    case Hint::Argv: {
      if (!text) return Shown::None;  // JSON: an array, written by append_json
      hints::split_argv(v.text, words_);
      s += '[';
      for (std::size_t w = 0; w < words_.size(); ++w) {
        if (w != 0) s += ',';
        render::append_text_quoted(s, words_[w]);
      }
      s += ']';
      return Shown::Symbol;
    }
    default:
      return Shown::None;
  }
}

void FieldDisplay::append_plain_text(std::string& out, const FieldValue& v, IntStyle style) const {
  switch (v.type) {
    case v1::Field::STRING: render::append_text_quoted(out, v.text); return;
    case v1::Field::BYTES: render::append_hex(out, v.text, 64); return;
    default: break;
  }
  switch (style) {
    case IntStyle::Hex:
      out += "0x";
      render::append_number(out, v.unsigned_value, 16);
      break;
    case IntStyle::Octal:
      out += '0';
      if (v.unsigned_value != 0) render::append_number(out, v.unsigned_value, 8);
      break;
    case IntStyle::Signed: render::append_signed(out, v.signed_value); break;
    case IntStyle::Unsigned: render::append_number(out, v.unsigned_value); break;
  }
}

void FieldDisplay::append_text(std::string& out, const std::vector<FieldValue>& values, std::size_t i) const {
  if (fields_[i].hint == Hint::PathArgv && !values[i].missing) {
    // path="/bin/echo" args=["echo","a b"]: the path where the field is, argv as a field of its own
    hints::split_argv(values[i].text, words_);
    render::append_text_quoted(out, words_.empty() ? std::string_view() : words_[0]);
    out += " args=[";
    for (std::size_t w = 1; w < words_.size(); ++w) {
      if (w != 1) out += ',';
      render::append_text_quoted(out, words_[w]);
    }
    out += ']';
    return;
  }
  if (fields_[i].hint != Hint::None && show(out, values, i, true) != Shown::None) return;
  append_plain_text(out, values[i], fields_[i].style);
}

void FieldDisplay::append_json(std::string& out, const std::vector<FieldValue>& values, std::size_t i) const {
  const FieldValue& v = values[i];
  if (v.missing) {
    out += "null";
    return;
  }
  const Plan& p = fields_[i];
  if (p.hint == Hint::Argv || p.hint == Hint::PathArgv) {
    hints::split_argv(v.text, words_);
    std::size_t w = 0;
    if (p.hint == Hint::PathArgv) {  // "filename":"/bin/echo","args":["echo","a b"]
      render::append_json_string(out, words_.empty() ? std::string_view() : words_[0]);
      out += ",\"args\":";
      w = 1;
    }
    out += '[';
    for (const std::size_t first = w; w < words_.size(); ++w) {
      if (w != first) out += ',';
      render::append_json_string(out, words_[w]);
    }
    out += ']';
    return;
  }
  if (p.hint != Hint::None) {
    const std::size_t at = out.size();
    switch (show(out, values, i, false)) {
      case Shown::Number: return;
      case Shown::Symbol: {
        const std::string symbol = out.substr(at);
        out.resize(at);
        render::append_json_string(out, symbol);
        return;
      }
      case Shown::None: out.resize(at); break;
    }
  }
  switch (v.type) {
    case v1::Field::STRING: render::append_json_string(out, v.text); break;
    case v1::Field::BYTES:
      out += '"';
      render::append_hex(out, v.text);
      out += '"';
      break;
    case v1::Field::SIGNED: render::append_signed(out, v.signed_value); break;
    default: render::append_number(out, v.unsigned_value); break;
  }
}

bool FieldDisplay::append_shown(std::string& out, const std::vector<FieldValue>& values, std::size_t i) const {
  const Plan& p = fields_[i];
  if (values[i].missing) return false;
  if (p.hint == Hint::Argv || p.hint == Hint::PathArgv) {
    hints::split_argv(values[i].text, words_);
    if (p.hint == Hint::PathArgv) {  // the field's own value is the path
      if (!words_.empty()) out += words_[0];
      return true;
    }
    for (std::size_t w = 0; w < words_.size(); ++w) {
      if (w != 0) out += ' ';
      out += words_[w];
    }
    return true;
  }
  const std::size_t at = out.size();
  if (p.hint != Hint::None && show(out, values, i, false) != Shown::None) return true;
  out.resize(at);
  return false;
}

}  // namespace perfstream::cli
