#include "net/byte_buffer.hpp"

#include <array>

namespace meshd::net {

namespace {

// Per-thread caches of the two block sizes sockets read into: kBlock (heads, request
// bodies) and kLargeBlock (response bodies). Each frees what it holds when the thread
// ends. Without the large one, every streamed response freed 64 KiB at the top of
// the worker's malloc arena, glibc gave it back (madvise), and the next response
// faulted it in again.
template <std::size_t Size, std::size_t Count>
struct BlockCache {
  std::array<char*, Count> blocks{};
  std::size_t count = 0;
  ~BlockCache() {
    for (std::size_t i = 0; i < count; ++i) delete[] blocks[i];
  }
  char* take() { return count > 0 ? blocks[--count] : nullptr; }
  bool give(char* p) {
    if (count == blocks.size()) return false;
    blocks[count++] = p;
    return true;
  }
};

BlockCache<ByteBuffer::kBlock, ByteBuffer::kCachedBlocks>& small_cache() {
  thread_local BlockCache<ByteBuffer::kBlock, ByteBuffer::kCachedBlocks> c;
  return c;
}

BlockCache<ByteBuffer::kLargeBlock, ByteBuffer::kCachedLargeBlocks>& large_cache() {
  thread_local BlockCache<ByteBuffer::kLargeBlock, ByteBuffer::kCachedLargeBlocks> c;
  return c;
}

}  // namespace

char* ByteBuffer::allocate(std::size_t n) {
  char* p = n == kBlock ? small_cache().take() : n == kLargeBlock ? large_cache().take() : nullptr;
  return p != nullptr ? p : new char[n];  // uninitialized, on purpose
}

void ByteBuffer::free_storage(char* p, std::size_t n) noexcept {
  if (p == nullptr) return;
  if (n == kBlock && small_cache().give(p)) return;
  if (n == kLargeBlock && large_cache().give(p)) return;
  delete[] p;
}

std::size_t ByteBuffer::cached_blocks() { return small_cache().count; }
std::size_t ByteBuffer::cached_large_blocks() { return large_cache().count; }

}  // namespace meshd::net
