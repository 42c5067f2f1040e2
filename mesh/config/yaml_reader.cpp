#include "mesh/config/yaml_reader.hpp"

#include <charconv>

namespace meshd::mesh::yaml {

std::string PathStack::str() const {
  std::string out;
  for (const auto& s : segments_) {
    if (s.index >= 0) {
      out += '[' + std::to_string(s.index) + ']';
    } else {
      if (!out.empty()) out += '.';
      out += s.key;
    }
  }
  return out;
}

std::string PathStack::str_with(std::string_view key) const {
  std::string out = str();
  if (!out.empty()) out += '.';
  out += key;
  return out;
}

Mark mark_of(const YAML::Node& node) {
  const YAML::Mark m = node.Mark();
  if (m.line < 0 || m.column < 0) return {};
  return {static_cast<std::uint32_t>(m.line + 1), static_cast<std::uint32_t>(m.column + 1)};
}

void Reader::error_at(Mark at, std::string message) {
  error_at_path(at, path_.str(), std::move(message));
}

void Reader::error_at_path(Mark at, std::string path, std::string message) {
  diag_.add({file_, at.line, at.column, std::move(path), std::move(message)});
}

namespace {
const char* kind_name(const YAML::Node& n) {
  switch (n.Type()) {
    case YAML::NodeType::Null:
      return "nothing (null)";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    default:
      return "a scalar";
  }
}
bool is_quoted(const YAML::Node& n) { return n.Tag() == "!"; }
}  // namespace

std::optional<std::string> Reader::scalar_text(const YAML::Node& n, std::string_view expected) {
  if (!n.IsScalar()) {
    error(n, "expected " + std::string(expected) + ", got " + kind_name(n));
    return std::nullopt;
  }
  return n.Scalar();
}

std::optional<std::string> Reader::string(const YAML::Node& n, std::size_t min_len,
                                          std::size_t max_len) {
  auto text = scalar_text(n, "a string");
  if (!text) return std::nullopt;
  if (text->size() < min_len) {
    error(n, min_len == 1 ? "must not be empty"
                          : "must be at least " + std::to_string(min_len) + " characters");
    return std::nullopt;
  }
  if (text->size() > max_len) {
    error(n, "must be at most " + std::to_string(max_len) + " characters, got " +
                 std::to_string(text->size()));
    return std::nullopt;
  }
  return text;
}

std::optional<std::int64_t> Reader::integer(const YAML::Node& n, std::int64_t min,
                                            std::int64_t max) {
  auto text = scalar_text(n, "an integer");
  if (!text) return std::nullopt;
  if (is_quoted(n)) {
    error(n, "expected an integer, got the string \"" + *text + "\" (remove the quotes)");
    return std::nullopt;
  }
  std::string_view digits = *text;
  if (!digits.empty() && digits.front() == '+') digits.remove_prefix(1);
  std::int64_t value = 0;
  const auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), value);
  if (digits.empty() || end != digits.data() + digits.size() ||
      ec == std::errc::invalid_argument) {
    error(n, "expected an integer, got \"" + *text + "\"");
    return std::nullopt;
  }
  if (ec == std::errc::result_out_of_range || value < min || value > max) {
    std::string msg = "must be ";
    if (max == INT64_MAX) {
      msg += "at least " + std::to_string(min);
    } else {
      msg += "between " + std::to_string(min) + " and " + std::to_string(max);
    }
    error(n, msg + ", got " + *text);
    return std::nullopt;
  }
  return value;
}

std::optional<bool> Reader::boolean(const YAML::Node& n) {
  auto text = scalar_text(n, "true or false");
  if (!text) return std::nullopt;
  if (!is_quoted(n)) {
    if (*text == "true") return true;
    if (*text == "false") return false;
  }
  error(n, "expected true or false, got \"" + *text + "\"");
  return std::nullopt;
}

std::optional<Duration> Reader::duration(const YAML::Node& n) {
  MapReader m(*this, n, {"unit", "value"});
  if (!m.ok()) return std::nullopt;
  std::optional<DurationUnit> unit;
  std::optional<std::int64_t> value;
  m.required("unit", [&](const YAML::Node& v) {
    unit = enumeration<DurationUnit>(v, {{"s", DurationUnit::s}, {"ms", DurationUnit::ms}});
  });
  // Bounded so that milliseconds never overflow (about 292 years in seconds).
  m.required("value", [&](const YAML::Node& v) { value = integer(v, 0, INT64_MAX / 1000000); });
  if (!unit || !value) return std::nullopt;
  return Duration{*value, *unit};
}

void Reader::enum_error(const YAML::Node& n, const std::string& got,
                        const std::vector<std::string_view>& names) {
  std::string msg = "unknown value \"" + got + "\", expected one of ";
  for (std::size_t i = 0; i < names.size(); ++i) {
    if (i > 0) msg += ", ";
    msg += names[i];
  }
  if (auto hint = closest_match(got, names); !hint.empty()) {
    msg += " (did you mean " + hint + "?)";
  }
  error(n, msg);
}

MapReader::MapReader(Reader& r, const YAML::Node& node,
                     std::initializer_list<std::string_view> known)
    : r_(r), node_(node), known_(known) {
  if (!node.IsMap()) {
    r_.error(node, std::string("expected a mapping, got ") + kind_name(node));
    return;
  }
  ok_ = true;
  for (const auto& kv : node) {
    const YAML::Node k = kv.first;
    if (!k.IsScalar()) {
      r_.error(k, "a key must be a plain name");
      continue;
    }
    std::string key = k.Scalar();
    if (const Entry* first = find(key)) {
      r_.error_at_path(mark_of(k), r_.path().str_with(key),
                       "duplicate key '" + key + "' (first at line " +
                           std::to_string(mark_of(first->key_node).line) + ")");
      continue;
    }
    entries_.push_back({std::move(key), k, kv.second});
  }
}

MapReader::~MapReader() {
  for (const auto& e : entries_) {
    bool known = false;
    for (auto k : known_) {
      if (k == e.key) {
        known = true;
        break;
      }
    }
    if (known) continue;
    std::string msg = "unknown field '" + e.key + "'";
    if (auto hint = closest_match(e.key, known_); !hint.empty()) {
      msg += " (did you mean '" + hint + "'?)";
    } else if (!known_.empty()) {
      msg += "; expected one of ";
      for (std::size_t i = 0; i < known_.size(); ++i) {
        if (i > 0) msg += ", ";
        msg += known_[i];
      }
    }
    r_.error_at_path(mark_of(e.key_node), r_.path().str_with(e.key), msg);
  }
}

const MapReader::Entry* MapReader::find(std::string_view key) const {
  for (const auto& e : entries_) {
    if (e.key == key) return &e;
  }
  return nullptr;
}

Mark MapReader::mark_of_key(std::string_view key) const {
  const Entry* e = find(key);
  return e != nullptr ? mark_of(e->key_node) : mark_of(node_);
}

void MapReader::missing(std::string_view key) {
  r_.error_at_path(mark_of(node_), r_.path().str_with(key),
                   "missing required field '" + std::string(key) + "'");
}

int MapReader::one_of(std::initializer_list<std::string_view> keys, bool required) {
  if (!ok_) return -1;
  int found = -1;
  int index = 0;
  std::string names;
  for (auto k : keys) {
    if (!names.empty()) names += ", ";
    names += k;
  }
  for (auto k : keys) {
    if (const Entry* e = find(k)) {
      if (found >= 0) {
        r_.error_at_path(mark_of(e->key_node), r_.path().str_with(k),
                         "only one of " + names + " may be given");
        return -1;
      }
      found = index;
    }
    ++index;
  }
  if (found < 0 && required) {
    r_.error_at_path(mark_of(node_), r_.path().str(), "exactly one of " + names + " is required");
  }
  return found;
}

}  // namespace meshd::mesh::yaml
