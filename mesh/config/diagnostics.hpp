#pragma once
// Validation errors, reported all at once as `FILE:LINE:COL: PATH: message` (SPEC §1).
#include <cstdint>
#include <string>
#include <vector>

namespace meshd::mesh {

struct Diagnostic {
  std::string file;
  std::uint32_t line = 0;  // 1-based; 0 when the file could not be read at all
  std::uint32_t column = 0;
  std::string path;  // e.g. routes[1].spec.httpRoute.action.weightedTargets[0].weight
  std::string message;

  std::string format() const;
};

class Diagnostics {
 public:
  void add(Diagnostic d) { items_.push_back(std::move(d)); }
  bool empty() const { return items_.empty(); }
  std::size_t size() const { return items_.size(); }
  const std::vector<Diagnostic>& items() const { return items_; }
  // Sorted by position in the file, then path, so that output is stable.
  void sort();
  std::string format_all() const;  // one line per error, each ending in '\n'

 private:
  std::vector<Diagnostic> items_;
};

// The closest candidate to `word` for a "did you mean" hint, or empty.
std::string closest_match(std::string_view word, const std::vector<std::string_view>& candidates);

}  // namespace meshd::mesh
