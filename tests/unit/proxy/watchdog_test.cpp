// The Watchdog (proxy/io.hpp) on a ByteStream over a real TCP connection on
// 127.0.0.1: a deadline that passes cancels the stream's operations and says which
// slot fired; disarming, re-arming and a second slot behave as its comment says.
// The io_context runs in the test's thread, always bounded by run_for.
#include <catch2/catch.hpp>

#include <array>
#include <chrono>
#include <exception>
#include <optional>

#include "proxy/io.hpp"

using namespace meshd::proxy;
using namespace std::chrono_literals;

namespace {

// A connected pair: `peer` is the far end, `stream` the one under the Watchdog.
struct Pair {
  asio::io_context io;
  tcp::socket peer{io};
  std::optional<ByteStream> stream;

  Pair() {
    tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
    peer.connect(acceptor.local_endpoint());
    stream.emplace(acceptor.accept());
  }
};

struct ReadResult {
  bool done = false;
  error_code ec;
  std::size_t n = 0;
  Clock::duration took{};
  bool fired_read = false;
  bool fired_write = false;
};

// One read on the stream, recording how and when it ended and what fired() said then.
awaitable<void> read_once(ByteStream& s, Watchdog& wd, ReadResult& out) {
  std::array<char, 64> buf;
  const auto start = Clock::now();
  auto [ec, n] = co_await s.async_read_some(asio::buffer(buf));
  out.took = Clock::now() - start;
  out.ec = ec;
  out.n = n;
  out.fired_read = wd.fired(Watchdog::read);
  out.fired_write = wd.fired(Watchdog::write);
  out.done = true;
}

// Runs `io` until `done` or `limit` passes; rethrows what the coroutine threw.
void run_until(asio::io_context& io, const bool& done, Clock::duration limit = 3s) {
  const auto end = Clock::now() + limit;
  while (!done && Clock::now() < end) {
    io.restart();
    io.run_for(10ms);
  }
}

void spawn(asio::io_context& io, awaitable<void> a, std::exception_ptr& error) {
  asio::co_spawn(io, std::move(a), [&error](std::exception_ptr e) { error = e; });
}

}  // namespace

TEST_CASE("watchdog: a read armed for 50 ms with nothing sent is cancelled and fired(read) says so") {
  Pair p;
  Watchdog wd(p.io.get_executor());
  ReadResult r;
  std::exception_ptr error;
  wd.arm(*p.stream, 50ms, Watchdog::read);
  spawn(p.io, read_once(*p.stream, wd, r), error);
  run_until(p.io, r.done);
  if (error) std::rethrow_exception(error);
  REQUIRE(r.done);
  CHECK(r.ec == asio::error::operation_aborted);
  CHECK(r.fired_read);
  CHECK_FALSE(r.fired_write);
  CHECK(r.took >= 45ms);
  CHECK(r.took < 1s);
  // The stream stays open (a 408 or 504 can still be written).
  CHECK(p.stream->is_open());
}

TEST_CASE("watchdog: disarming before the deadline means no cancel") {
  Pair p;
  Watchdog wd(p.io.get_executor());
  ReadResult r;
  std::exception_ptr error;
  wd.arm(*p.stream, 50ms, Watchdog::read);
  spawn(p.io, read_once(*p.stream, wd, r), error);
  // Disarm at 10 ms; the peer sends at 200 ms, well after the old deadline.
  asio::steady_timer disarm_at(p.io, 10ms);
  disarm_at.async_wait([&](const error_code&) { wd.disarm(Watchdog::read); });
  asio::steady_timer send_at(p.io, 200ms);
  send_at.async_wait([&](const error_code&) { asio::write(p.peer, asio::buffer("hi", 2)); });
  run_until(p.io, r.done);
  if (error) std::rethrow_exception(error);
  REQUIRE(r.done);
  CHECK_FALSE(r.ec);
  CHECK(r.n == 2);
  CHECK_FALSE(r.fired_read);
  CHECK(r.took >= 150ms);
}

TEST_CASE("watchdog: a read slot and a write slot armed together fire separately") {
  Pair p;
  Watchdog wd(p.io.get_executor());
  ReadResult first, second;
  std::exception_ptr error;
  wd.arm(*p.stream, 400ms, Watchdog::write);
  wd.arm(*p.stream, 50ms, Watchdog::read);
  spawn(p.io, read_once(*p.stream, wd, first), error);
  run_until(p.io, first.done);
  if (error) std::rethrow_exception(error);
  REQUIRE(first.done);
  CHECK(first.ec == asio::error::operation_aborted);
  CHECK(first.took < 300ms);  // the read deadline, not the write one
  CHECK(first.fired_read);
  CHECK_FALSE(first.fired_write);
  CHECK_FALSE(wd.fired(Watchdog::write));

  // The write slot kept its deadline: it fires later, on its own.
  wd.disarm(Watchdog::read);
  spawn(p.io, read_once(*p.stream, wd, second), error);
  run_until(p.io, second.done);
  if (error) std::rethrow_exception(error);
  REQUIRE(second.done);
  CHECK(second.ec == asio::error::operation_aborted);
  CHECK(second.fired_write);
  CHECK_FALSE(second.fired_read);
  CHECK(first.took + second.took >= 300ms);
}

TEST_CASE("watchdog: arming a later deadline after an earlier one postpones firing") {
  Pair p;
  Watchdog wd(p.io.get_executor());
  ReadResult r;
  std::exception_ptr error;
  wd.arm(*p.stream, 50ms, Watchdog::read);  // the timer starts for 50 ms
  wd.arm(*p.stream, 300ms, Watchdog::read);  // only recorded: the timer wakes early and sleeps again
  spawn(p.io, read_once(*p.stream, wd, r), error);
  run_until(p.io, r.done);
  if (error) std::rethrow_exception(error);
  REQUIRE(r.done);
  CHECK(r.ec == asio::error::operation_aborted);
  CHECK(r.fired_read);
  CHECK(r.took >= 280ms);
  CHECK(r.took < 2s);

  // And activity that keeps re-arming keeps postponing it: data at 40 ms, then a
  // re-arm for 100 ms from there, so nothing fires before ~140 ms.
  ReadResult again;
  wd.arm(*p.stream, 60ms, Watchdog::read);
  asio::steady_timer rearm_at(p.io, 40ms);
  rearm_at.async_wait([&](const error_code&) { wd.arm(*p.stream, 100ms, Watchdog::read); });
  spawn(p.io, read_once(*p.stream, wd, again), error);
  run_until(p.io, again.done);
  if (error) std::rethrow_exception(error);
  REQUIRE(again.done);
  CHECK(again.ec == asio::error::operation_aborted);
  CHECK(again.took >= 130ms);
}

TEST_CASE("watchdog: re-arming after a fire resets fired()") {
  Pair p;
  Watchdog wd(p.io.get_executor());
  ReadResult r;
  std::exception_ptr error;
  wd.arm(*p.stream, 30ms, Watchdog::read);
  spawn(p.io, read_once(*p.stream, wd, r), error);
  run_until(p.io, r.done);
  if (error) std::rethrow_exception(error);
  REQUIRE(r.done);
  REQUIRE(r.fired_read);
  CHECK(wd.fired(Watchdog::read));  // stays true until its owner re-arms or disarms

  wd.arm(*p.stream, 500ms, Watchdog::read);
  CHECK_FALSE(wd.fired(Watchdog::read));

  // The new deadline works: data before it completes the read without a fire.
  ReadResult next;
  asio::steady_timer send_at(p.io, 20ms);
  send_at.async_wait([&](const error_code&) { asio::write(p.peer, asio::buffer("x", 1)); });
  spawn(p.io, read_once(*p.stream, wd, next), error);
  run_until(p.io, next.done);
  if (error) std::rethrow_exception(error);
  REQUIRE(next.done);
  CHECK_FALSE(next.ec);
  CHECK(next.n == 1);
  CHECK_FALSE(next.fired_read);

  // disarm() resets it too.
  wd.disarm(Watchdog::read);
  CHECK_FALSE(wd.fired(Watchdog::read));
}
