#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <thread>
#include <vector>

#include "proxy/app_limit.hpp"

using namespace meshd::proxy;
using namespace std::chrono_literals;

namespace {
// Runs `ioc` until it has no work, at most `limit`.
void run_for(asio::io_context& ioc, std::chrono::milliseconds limit) {
  ioc.restart();
  ioc.run_for(limit);
}
}  // namespace

TEST_CASE("app pool limit: slots up to the limit, then waiters in order, then overflow") {
  asio::io_context ioc;
  AppPoolLimit limit(1, 2);
  std::vector<int> order;
  std::vector<bool> got(4, false);
  auto take = [&](int i, std::chrono::milliseconds wait) -> awaitable<void> {
    got[static_cast<std::size_t>(i)] = co_await limit.acquire(ioc.get_executor(), Clock::now() + wait);
    if (got[static_cast<std::size_t>(i)]) order.push_back(i);
  };
  asio::co_spawn(ioc, take(0, 1s), asio::detached);
  asio::co_spawn(ioc, take(1, 5s), asio::detached);
  asio::co_spawn(ioc, take(2, 5s), asio::detached);
  asio::co_spawn(ioc, take(3, 5s), asio::detached);  // the line (2) is full
  run_for(ioc, 50ms);
  CHECK(order == std::vector<int>{0});
  CHECK_FALSE(got[3]);
  CHECK(limit.active() == 1);
  CHECK(limit.pending() == 2);
  // Each release hands the slot to the first in line, at once (no polling).
  const auto t0 = Clock::now();
  limit.release();
  run_for(ioc, 50ms);
  CHECK(order == std::vector<int>{0, 1});
  CHECK(limit.active() == 1);  // passed on, not given back
  limit.release();
  run_for(ioc, 50ms);
  CHECK(order == std::vector<int>{0, 1, 2});
  CHECK(Clock::now() - t0 < 1s);
  limit.release();
  CHECK(limit.active() == 0);
  CHECK(limit.pending() == 0);
}

TEST_CASE("app pool limit: a waiter whose time runs out leaves the line") {
  asio::io_context ioc;
  AppPoolLimit limit(1, 5);
  bool first = false, second = true, third = false;
  asio::co_spawn(ioc, [&]() -> awaitable<void> { first = co_await limit.acquire(ioc.get_executor(), Clock::now()); },
                 asio::detached);
  asio::co_spawn(ioc, [&]() -> awaitable<void> {
    second = co_await limit.acquire(ioc.get_executor(), Clock::now() + 30ms);
  }, asio::detached);
  run_for(ioc, 200ms);
  CHECK(first);
  CHECK_FALSE(second);
  CHECK(limit.pending() == 0);
  asio::co_spawn(ioc, [&]() -> awaitable<void> {
    third = co_await limit.acquire(ioc.get_executor(), Clock::now() + 5s);
  }, asio::detached);
  run_for(ioc, 20ms);
  limit.release();  // goes to the third, not to the second that left
  run_for(ioc, 50ms);
  CHECK(third);
  CHECK(limit.active() == 1);
}

TEST_CASE("app pool limit: a slot given back on another thread wakes a waiter on this one") {
  asio::io_context here, there;
  AppPoolLimit limit(1, 1);
  bool held = false, waited = false;
  asio::co_spawn(there, [&]() -> awaitable<void> { held = co_await limit.acquire(there.get_executor(), Clock::now()); },
                 asio::detached);
  there.run();
  REQUIRE(held);
  asio::co_spawn(here, [&]() -> awaitable<void> {
    waited = co_await limit.acquire(here.get_executor(), Clock::now() + 5s);
  }, asio::detached);
  std::thread other([&] {
    std::this_thread::sleep_for(50ms);
    limit.release();
  });
  const auto t0 = Clock::now();
  here.run_for(3s);
  other.join();
  CHECK(waited);
  CHECK(Clock::now() - t0 < 2s);
}
