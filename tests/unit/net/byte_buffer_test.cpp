#include "net/byte_buffer.hpp"

#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

using meshd::net::ByteBuffer;

namespace {
void append(ByteBuffer& b, std::string_view s) {
  char* p = b.prepare(s.size());
  std::memcpy(p, s.data(), s.size());
  b.commit(s.size());
}
}  // namespace

TEST_CASE("byte buffer: append, consume from the front, compact and grow keep the bytes") {
  ByteBuffer b;
  append(b, "hello ");
  append(b, "world");
  CHECK(b.view() == "hello world");
  b.consume(6);
  CHECK(b.view() == "world");
  // Room at the front is reused by compaction before growing.
  const auto cap = b.capacity();
  b.prepare(cap - 5);
  CHECK(b.capacity() == cap);
  CHECK(b.view() == "world");
  // Growing copies the data into the bigger block.
  b.prepare(cap * 3);
  CHECK(b.capacity() >= cap * 3 + 5);
  CHECK(b.view() == "world");
  b.consume(100);
  CHECK(b.empty());
  b.release_if_empty();
  CHECK(b.capacity() == 0);
}

TEST_CASE("byte buffer: socket-read blocks are reused through a bounded per-thread cache") {
  // Run on a fresh thread so that the cache starts empty.
  std::thread([] {
    CHECK(ByteBuffer::cached_blocks() == 0);
    {
      ByteBuffer a;
      a.prepare(ByteBuffer::kBlock);
      append(a, "x");
      a.consume(1);
      a.release_if_empty();  // back to the cache
      CHECK(ByteBuffer::cached_blocks() == 1);
      ByteBuffer b;
      b.prepare(ByteBuffer::kBlock);  // taken from it
      CHECK(ByteBuffer::cached_blocks() == 0);
      ByteBuffer moved(std::move(b));
      CHECK(b.capacity() == 0);
      CHECK(moved.capacity() == ByteBuffer::kBlock);
    }  // `moved` goes back to the cache; `b` owns nothing
    CHECK(ByteBuffer::cached_blocks() == 1);
    {
      // Never more than kCachedBlocks are kept; other sizes are not cached.
      std::vector<ByteBuffer> many(ByteBuffer::kCachedBlocks + 8);
      for (auto& m : many) m.prepare(ByteBuffer::kBlock);
      ByteBuffer odd;
      odd.prepare(100);
    }
    CHECK(ByteBuffer::cached_blocks() == ByteBuffer::kCachedBlocks);
  }).join();
}

TEST_CASE("byte buffer: a head-sized buffer grows to a response-body block, which has a cache of its own") {
  std::thread([] {
    CHECK(ByteBuffer::cached_large_blocks() == 0);
    {
      ByteBuffer a;
      a.prepare(ByteBuffer::kBlock);  // a head read
      a.prepare(ByteBuffer::kLargeBlock);  // then a body read: 16 KiB doubles to 64 KiB
      CHECK(a.capacity() == ByteBuffer::kLargeBlock);
      CHECK(ByteBuffer::cached_blocks() == 1);  // the 16 KiB block went back
      a.release_if_empty();
      CHECK(ByteBuffer::cached_large_blocks() == 1);
      ByteBuffer b;
      b.prepare(ByteBuffer::kLargeBlock);  // taken from the large cache
      CHECK(ByteBuffer::cached_large_blocks() == 0);
    }
    CHECK(ByteBuffer::cached_large_blocks() == 1);
    {
      std::vector<ByteBuffer> many(ByteBuffer::kCachedLargeBlocks + 3);
      for (auto& m : many) m.prepare(ByteBuffer::kLargeBlock);
    }
    CHECK(ByteBuffer::cached_large_blocks() == ByteBuffer::kCachedLargeBlocks);  // bounded
  }).join();
}
