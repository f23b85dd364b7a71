#include "collector/cli/options.hpp"

#include <charconv>
#include <ostream>
#include <sstream>

namespace perfstream {

ArgParser& ArgParser::flag(const std::string& name, char short_name, const std::string& help) {
  specs_.push_back(Spec{name, short_name, false, "", help});
  return *this;
}

ArgParser& ArgParser::option(const std::string& name, char short_name, const std::string& value_name,
                             const std::string& help) {
  specs_.push_back(Spec{name, short_name, true, value_name, help});
  return *this;
}

const ArgParser::Spec* ArgParser::find_long(const std::string& name) const {
  for (const auto& s : specs_) {
    if (s.name == name) return &s;
  }
  return nullptr;
}

const ArgParser::Spec* ArgParser::find_short(char c) const {
  for (const auto& s : specs_) {
    if (c != 0 && s.short_name == c) return &s;
  }
  return nullptr;
}

Status ArgParser::parse(const std::vector<std::string>& args) {
  auto unknown = [&](const std::string& arg) {
    return Error("perfstream " + command_ + ": unknown flag '" + arg + "' (see perfstream " + command_ + " --help)");
  };
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      rest_.assign(args.begin() + static_cast<long>(i) + 1, args.end());
      return {};
    }
    const Spec* spec = nullptr;
    std::optional<std::string> inline_value;
    if (arg.rfind("--", 0) == 0) {
      std::string name = arg.substr(2);
      if (auto eq = name.find('='); eq != std::string::npos) {
        inline_value = name.substr(eq + 1);
        name = name.substr(0, eq);
      }
      spec = find_long(name);
      if (spec == nullptr) return unknown(arg);
    } else if (arg.size() >= 2 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9')) {
      spec = find_short(arg[1]);
      if (spec == nullptr) return unknown(arg);
      if (arg.size() > 2) {
        if (!spec->takes_value) return unknown(arg);
        inline_value = arg.substr(2);
      }
    } else {
      positionals_.push_back(arg);
      continue;
    }
    if (!spec->takes_value) {
      if (inline_value) return Error("perfstream " + command_ + ": --" + spec->name + " takes no value");
      given_[spec->name].push_back("");
      continue;
    }
    if (!inline_value) {
      if (i + 1 >= args.size()) {
        return Error("perfstream " + command_ + ": --" + spec->name + " needs a value (" + spec->value_name + ")");
      }
      // A flag where the value belongs (`--probe --duration 1s`) is a mistake, not a value: taking it would
      // swallow the flag. A value that starts with a dash goes in with `=` (--name=--odd).
      const std::string& next = args[i + 1];
      const bool looks_like_flag = (next.size() > 2 && next.rfind("--", 0) == 0) ||
                                   (next.size() >= 2 && next[0] == '-' && find_short(next[1]) != nullptr);
      if (looks_like_flag || next == "--") {
        return Error("perfstream " + command_ + ": --" + spec->name + " needs a value (" + spec->value_name +
                     "), not the flag '" + next + "'");
      }
      inline_value = args[++i];
    }
    given_[spec->name].push_back(*inline_value);
  }
  return {};
}

std::optional<int> ArgParser::parse_or_exit(const std::vector<std::string>& args, std::ostream& out,
                                            std::ostream& err) {
  if (auto st = parse(args); !st) {
    err << st.error().message() << "\n";
    return 2;
  }
  if (has("help")) {
    out << help();
    return 0;
  }
  return std::nullopt;
}

bool ArgParser::has(const std::string& name) const { return given_.count(name) != 0; }

std::optional<std::string> ArgParser::value(const std::string& name) const {
  auto it = given_.find(name);
  if (it == given_.end() || it->second.empty()) return std::nullopt;
  return it->second.back();
}

std::vector<std::string> ArgParser::values(const std::string& name) const {
  auto it = given_.find(name);
  return it == given_.end() ? std::vector<std::string>() : it->second;
}

std::string ArgParser::help() const {
  std::ostringstream out;
  out << "usage: " << usage_ << "\n\nflags:\n";
  for (const auto& s : specs_) {
    std::string left = "  ";
    left += s.short_name ? std::string("-") + s.short_name + ", " : "    ";
    left += "--" + s.name;
    if (s.takes_value) left += " " + s.value_name;
    out << left;
    if (left.size() < 34) out << std::string(34 - left.size(), ' ');
    else out << "\n" << std::string(34, ' ');
    out << s.help << "\n";
  }
  if (!notes_.empty()) out << "\n" << notes_;
  return out.str();
}

Result<std::uint64_t> parse_count(const std::string& flag, const std::string& text) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size() || text.empty()) {
    return Error("--" + flag + " '" + text + "': not a whole number");
  }
  return v;
}

Result<std::uint64_t> parse_bytes(const std::string& flag, const std::string& text) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr == text.data()) return Error("--" + flag + " '" + text + "': not a size (like 64K, 4M)");
  const std::string unit(ptr, text.data() + text.size());
  std::uint64_t scale = 1;
  if (unit.empty() || unit == "B") scale = 1;
  else if (unit == "K" || unit == "k" || unit == "KiB") scale = 1ull << 10;
  else if (unit == "M" || unit == "m" || unit == "MiB") scale = 1ull << 20;
  else if (unit == "G" || unit == "g" || unit == "GiB") scale = 1ull << 30;
  else return Error("--" + flag + " '" + text + "': unknown unit '" + unit + "' (use K, M or G)");
  if (v > (~0ull) / scale) return Error("--" + flag + " '" + text + "': too large");
  return v * scale;
}

Result<std::uint64_t> parse_duration_ms(const std::string& flag, const std::string& text) {
  std::uint64_t v = 0;
  auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr == text.data()) return Error("--" + flag + " '" + text + "': not a duration (like 500ms, 10s, 2m)");
  const std::string unit(ptr, text.data() + text.size());
  std::uint64_t scale = 0;
  if (unit == "ms") scale = 1;
  else if (unit.empty() || unit == "s") scale = 1000;
  else if (unit == "m" || unit == "min") scale = 60 * 1000;
  else if (unit == "h") scale = 3600 * 1000;
  else return Error("--" + flag + " '" + text + "': unknown unit '" + unit + "' (use ms, s, m or h)");
  if (v > (~0ull) / scale) return Error("--" + flag + " '" + text + "': too large");
  return v * scale;
}

}  // namespace perfstream
