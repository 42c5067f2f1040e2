#pragma once
// A growable byte buffer that does not zero what it allocates (std::string::resize
// does, and a 16 KiB memset per read showed up in profiles), with cheap consumption
// from the front and a release() that gives the memory back when idle.
//
// Buffers of exactly kBlock bytes (every socket read asks for one) come from a small
// per-thread cache: a request takes and gives back two of them (a downstream read, an
// upstream read), and a 16 KiB allocation bypasses malloc's fast per-thread caches.
// Buffers of kLargeBlock (response bodies) have a cache of their own.
#include <cstddef>
#include <cstring>
#include <string_view>
#include <utility>

namespace meshd::net {

class ByteBuffer {
 public:
  static constexpr std::size_t kBlock = 16 * 1024;
  // Blocks kept per thread for reuse (256 KiB).
  static constexpr std::size_t kCachedBlocks = 16;
  // Response bodies are read in pieces of this size (a 16 KiB buffer grows to it).
  static constexpr std::size_t kLargeBlock = 64 * 1024;
  static constexpr std::size_t kCachedLargeBlocks = 4;  // 256 KiB per thread

  ByteBuffer() = default;
  ByteBuffer(const ByteBuffer&) = delete;
  ByteBuffer& operator=(const ByteBuffer&) = delete;
  ByteBuffer(ByteBuffer&& o) noexcept
      : data_(std::exchange(o.data_, nullptr)),
        capacity_(std::exchange(o.capacity_, 0)),
        start_(std::exchange(o.start_, 0)),
        size_(std::exchange(o.size_, 0)) {}
  ByteBuffer& operator=(ByteBuffer&& o) noexcept {
    if (this != &o) {
      free_storage(data_, capacity_);
      data_ = std::exchange(o.data_, nullptr);
      capacity_ = std::exchange(o.capacity_, 0);
      start_ = std::exchange(o.start_, 0);
      size_ = std::exchange(o.size_, 0);
    }
    return *this;
  }
  ~ByteBuffer() { free_storage(data_, capacity_); }

  std::string_view view() const { return {data_ + start_, size_}; }
  std::size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Space for at least n more bytes after the data; fill it, then commit().
  char* prepare(std::size_t n) {
    if (start_ + size_ + n > capacity_) {
      if (size_ + n <= capacity_) {
        std::memmove(data_, data_ + start_, size_);  // compact
      } else {
        std::size_t cap = capacity_ == 0 ? n : capacity_;
        while (cap < size_ + n) cap *= 2;
        char* bigger = allocate(cap);
        if (size_ > 0) std::memcpy(bigger, data_ + start_, size_);
        free_storage(data_, capacity_);
        data_ = bigger;
        capacity_ = cap;
      }
      start_ = 0;
    }
    return data_ + start_ + size_;
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
      free_storage(data_, capacity_);
      data_ = nullptr;
      capacity_ = start_ = 0;
    }
  }
  std::size_t capacity() const { return capacity_; }

  // Blocks in this thread's caches (for tests).
  static std::size_t cached_blocks();
  static std::size_t cached_large_blocks();

 private:
  static char* allocate(std::size_t n);
  static void free_storage(char* p, std::size_t n) noexcept;

  char* data_ = nullptr;
  std::size_t capacity_ = 0;
  std::size_t start_ = 0;
  std::size_t size_ = 0;
};

}  // namespace meshd::net
