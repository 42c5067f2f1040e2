#include "net/byte_buffer.hpp"

#include <array>

namespace meshd::net {

namespace {

// The per-thread cache of kBlock-sized blocks. Its destructor frees what it holds
// when the thread ends.
struct BlockCache {
  std::array<char*, ByteBuffer::kCachedBlocks> blocks{};
  std::size_t count = 0;
  ~BlockCache() {
    for (std::size_t i = 0; i < count; ++i) delete[] blocks[i];
  }
};

BlockCache& cache() {
  thread_local BlockCache c;
  return c;
}

}  // namespace

char* ByteBuffer::allocate(std::size_t n) {
  if (n == kBlock) {
    auto& c = cache();
    if (c.count > 0) return c.blocks[--c.count];
  }
  return new char[n];  // uninitialized, on purpose
}

void ByteBuffer::free_storage(char* p, std::size_t n) noexcept {
  if (p == nullptr) return;
  if (n == kBlock) {
    auto& c = cache();
    if (c.count < c.blocks.size()) {
      c.blocks[c.count++] = p;
      return;
    }
  }
  delete[] p;
}

std::size_t ByteBuffer::cached_blocks() { return cache().count; }

}  // namespace meshd::net
