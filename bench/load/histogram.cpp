#include "bench/load/histogram.hpp"

#include <algorithm>
#include <bit>
#include <cmath>

namespace meshd::bench {

std::size_t Histogram::index_of(std::uint64_t v) {
  // Values below 2^kSubBits get one bucket each; above, an octave has 2^kSubBits
  // buckets of equal width.
  constexpr std::uint64_t sub = 1ULL << kSubBits;
  if (v < sub) return static_cast<std::size_t>(v);
  const int octave = std::bit_width(v) - kSubBits;  // >= 1
  if (octave > kOctaves) return ((kOctaves + 1) << kSubBits) - 1;
  const std::uint64_t offset = (v >> octave) - (sub >> 1);  // 0 .. sub/2 - 1 ... scaled
  return static_cast<std::size_t>(octave) * (sub >> 1) + (sub >> 1) + static_cast<std::size_t>(offset);
}

std::uint64_t Histogram::upper_bound_of(std::size_t index) {
  constexpr std::uint64_t sub = 1ULL << kSubBits;
  if (index < sub) return index;
  const std::size_t rel = index - (sub >> 1);
  const std::size_t octave = rel / (sub >> 1);
  const std::uint64_t offset = rel % (sub >> 1);
  return (((sub >> 1) + offset + 1) << octave) - 1;
}

void Histogram::record(std::uint64_t micros) {
  ++counts_[std::min(index_of(micros), counts_.size() - 1)];
  ++count_;
  sum_ += micros;
  min_ = std::min(min_, micros);
  max_ = std::max(max_, micros);
}

void Histogram::merge(const Histogram& o) {
  for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
  count_ += o.count_;
  sum_ += o.sum_;
  min_ = std::min(min_, o.min_);
  max_ = std::max(max_, o.max_);
}

std::uint64_t Histogram::percentile(double p) const {
  if (count_ == 0) return 0;
  const auto rank = static_cast<std::uint64_t>(std::ceil(std::clamp(p, 0.0, 100.0) / 100.0 * static_cast<double>(count_)));
  std::uint64_t seen = 0;
  for (std::size_t i = 0; i < counts_.size(); ++i) {
    seen += counts_[i];
    if (seen >= std::max<std::uint64_t>(rank, 1)) return std::min(upper_bound_of(i), max_);
  }
  return max_;
}

}  // namespace meshd::bench
