#pragma once
// An HDR-style latency histogram: log-linear buckets (64 per power of two, under
// 1.6 % relative error) from 1 µs to about 18 minutes, fixed memory,
// mergeable across threads.
#include <array>
#include <cstdint>
#include <vector>

namespace meshd::bench {

class Histogram {
 public:
  static constexpr int kSubBits = 7;  // 128 values exact, then 64 buckets per octave
  static constexpr int kOctaves = 31;  // 2^30 µs ≈ 17.9 min
  void record(std::uint64_t micros);
  void merge(const Histogram& o);
  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ ? min_ : 0; }
  std::uint64_t max() const { return max_; }
  double mean() const { return count_ ? static_cast<double>(sum_) / static_cast<double>(count_) : 0; }
  // The value at percentile p (0..100): the upper bound of the bucket holding it,
  // never above the maximum recorded.
  std::uint64_t percentile(double p) const;

 private:
  static std::size_t index_of(std::uint64_t v);
  static std::uint64_t upper_bound_of(std::size_t index);
  std::array<std::uint64_t, (kOctaves + 1) << kSubBits> counts_{};
  std::uint64_t count_ = 0, sum_ = 0, min_ = UINT64_MAX, max_ = 0;
};

}  // namespace meshd::bench
