#pragma once
// A growable byte buffer that does not zero what it allocates (std::string::resize
// does, and a 16 KiB memset per read showed up in profiles), with cheap consumption
// from the front and a release() that gives the memory back when idle.
#include <cstddef>
#include <cstring>
#include <memory>
#include <string_view>

namespace meshd::net {

class ByteBuffer {
 public:
  std::string_view view() const { return {data_.get() + start_, size_}; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Space for at least n more bytes after the data; fill it, then commit().
  char* prepare(std::size_t n) {
    if (start_ + size_ + n > capacity_) {
      if (size_ + n <= capacity_) {
        std::memmove(data_.get(), data_.get() + start_, size_);  // compact
      } else {
        std::size_t cap = capacity_ == 0 ? n : capacity_;
        while (cap < size_ + n) cap *= 2;
        auto bigger = std::make_unique_for_overwrite<char[]>(cap);
        if (size_ > 0) std::memcpy(bigger.get(), data_.get() + start_, size_);
        data_ = std::move(bigger);
        capacity_ = cap;
      }
      start_ = 0;
    }
    return data_.get() + start_ + size_;
  }
  void commit(std::size_t n) { size_ += n; }
  void consume(std::size_t n) {
    if (n >= size_) {
      start_ = size_ = 0;
    } else {
      start_ += n;
      size_ -= n;
    }
  }
  void clear() { start_ = size_ = 0; }
  // Frees the memory when there is no data (an idle connection keeps no buffer).
  void release_if_empty() {
    if (size_ == 0) {
      data_.reset();
      capacity_ = start_ = 0;
    }
  }
  std::size_t capacity() const { return capacity_; }

 private:
  std::unique_ptr<char[]> data_;
  std::size_t capacity_ = 0;
  std::size_t start_ = 0;
  std::size_t size_ = 0;
};

}  // namespace meshd::net
