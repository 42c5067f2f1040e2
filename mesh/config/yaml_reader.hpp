#pragma once
// Checked reading of YAML nodes into typed values, with every problem reported as a
// Diagnostic at the node's position and the current PATH. Internal to the loader: it
// includes yaml-cpp, so only the loader's .cpp files include it.
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "mesh/config/diagnostics.hpp"
#include "mesh/config/model.hpp"

namespace meshd::mesh::yaml {

// The PATH of the value being read: keys and list indices.
class PathStack {
 public:
  void push_key(std::string_view key) { segments_.push_back({std::string(key), -1}); }
  void push_index(std::size_t i) { segments_.push_back({{}, static_cast<long>(i)}); }
  void pop() { segments_.pop_back(); }
  std::string str() const;
  std::string str_with(std::string_view key) const;  // str() + "." + key

 private:
  struct Segment {
    std::string key;
    long index;
  };
  std::vector<Segment> segments_;
};

Mark mark_of(const YAML::Node& node);

class Reader {
 public:
  Reader(Diagnostics& diag, std::string file) : diag_(diag), file_(std::move(file)) {}

  void error(const YAML::Node& at, std::string message) { error_at(mark_of(at), std::move(message)); }
  void error_at(Mark at, std::string message);
  void error_at_path(Mark at, std::string path, std::string message);
  PathStack& path() { return path_; }
  std::size_t error_count() const { return diag_.size(); }

  // Scalars. Each returns nullopt (after reporting) when the node is not acceptable.
  std::optional<std::string> string(const YAML::Node& n, std::size_t min_len = 1,
                                    std::size_t max_len = SIZE_MAX);
  std::optional<std::int64_t> integer(const YAML::Node& n, std::int64_t min, std::int64_t max);
  std::optional<bool> boolean(const YAML::Node& n);
  std::optional<Duration> duration(const YAML::Node& n);
  std::optional<std::int32_t> port(const YAML::Node& n) {
    auto v = integer(n, 1, 65535);
    return v ? std::optional<std::int32_t>(static_cast<std::int32_t>(*v)) : std::nullopt;
  }
  template <class E>
  std::optional<E> enumeration(const YAML::Node& n,
                               std::initializer_list<std::pair<std::string_view, E>> values);

  // A list of min..max items; `item` is called for each with the index on the path.
  template <class F>
  void list(const YAML::Node& n, std::size_t min, std::size_t max, F&& item);

 private:
  std::optional<std::string> scalar_text(const YAML::Node& n, std::string_view expected);
  void enum_error(const YAML::Node& n, const std::string& got,
                  const std::vector<std::string_view>& names);

  Diagnostics& diag_;
  std::string file_;
  PathStack path_;
};

// Reads one mapping: reports a non-mapping, duplicate keys at the second occurrence,
// and, when it goes out of scope, unknown keys (with "did you mean").
class MapReader {
 public:
  MapReader(Reader& r, const YAML::Node& node, std::initializer_list<std::string_view> known);
  ~MapReader();
  MapReader(const MapReader&) = delete;
  MapReader& operator=(const MapReader&) = delete;

  bool ok() const { return ok_; }
  bool has(std::string_view key) const { return find(key) != nullptr; }
  const YAML::Node& node() const { return node_; }

  // Calls f(value) with the key on the path when the key is present; returns whether it was.
  template <class F>
  bool optional(std::string_view key, F&& f);
  // As optional(), and reports "missing required field" at this mapping when absent.
  template <class F>
  bool required(std::string_view key, F&& f);
  // "Exactly one of" (or, with required=false, "at most one of") the keys: returns the
  // index of the one given, or -1 (after reporting when that is an error).
  int one_of(std::initializer_list<std::string_view> keys, bool required = true);
  void missing(std::string_view key);
  Mark mark_of_key(std::string_view key) const;

 private:
  struct Entry {
    std::string key;
    YAML::Node key_node;
    YAML::Node value;
  };
  const Entry* find(std::string_view key) const;

  Reader& r_;
  YAML::Node node_;
  std::vector<std::string_view> known_;
  std::vector<Entry> entries_;
  bool ok_ = false;
};

// ---- templates ------------------------------------------------------------------------

template <class E>
std::optional<E> Reader::enumeration(const YAML::Node& n,
                                     std::initializer_list<std::pair<std::string_view, E>> values) {
  auto text = scalar_text(n, "one of the names");
  if (!text) return std::nullopt;
  std::vector<std::string_view> names;
  for (const auto& [name, value] : values) {
    if (*text == name) return value;
    names.push_back(name);
  }
  enum_error(n, *text, names);
  return std::nullopt;
}

template <class F>
void Reader::list(const YAML::Node& n, std::size_t min, std::size_t max, F&& item) {
  if (!n.IsSequence()) {
    error(n, "expected a list");
    return;
  }
  if (n.size() < min || n.size() > max) {
    std::string msg = "expected ";
    if (max == SIZE_MAX) {
      msg += "at least " + std::to_string(min);
    } else if (min == max) {
      msg += "exactly " + std::to_string(min);
    } else {
      msg += std::to_string(min) + " to " + std::to_string(max);
    }
    msg += (max == SIZE_MAX ? min : max) == 1 ? " item" : " items";
    msg += ", got " + std::to_string(n.size());
    if (n.size() == 0) msg += " (omit the field instead of giving an empty list)";
    error(n, msg);
    if (n.size() < min) return;
  }
  std::size_t i = 0;
  for (const auto& element : n) {
    path_.push_index(i);
    item(element, i);
    path_.pop();
    ++i;
  }
}

template <class F>
bool MapReader::optional(std::string_view key, F&& f) {
  const Entry* e = find(key);
  if (e == nullptr) return false;
  r_.path().push_key(key);
  f(e->value);
  r_.path().pop();
  return true;
}

template <class F>
bool MapReader::required(std::string_view key, F&& f) {
  if (!ok_) return false;
  if (optional(key, std::forward<F>(f))) return true;
  missing(key);
  return false;
}

}  // namespace meshd::mesh::yaml
