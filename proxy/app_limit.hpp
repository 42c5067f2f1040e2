#pragma once
// The local app's connection-pool limit (listener connectionPool.http), shared by all
// workers: at most max_connections requests in flight to the app (one per HTTP/1.1
// connection), at most max_pending waiting for one; beyond, 503 overflow. A request
// that waits is woken when a slot is handed to it (first come, first served), not by
// polling. Taking and giving back a slot under the limit is lock-free; only waiting
// (the limit reached) takes the waiters' lock.
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>

#include "proxy/io.hpp"

namespace meshd::proxy {

class AppPoolLimit {
 public:
  AppPoolLimit(std::uint32_t max_connections, std::uint32_t max_pending)
      : max_connections_(max_connections), max_pending_(max_pending) {}

  // A slot now, or after waiting in line until `give_up`; false when the line is full
  // or the wait ran out.
  awaitable<bool> acquire(asio::any_io_executor ex, Clock::time_point give_up);
  // Gives a slot back: to the first waiter, if any, else to the pool.
  void release();

  std::uint32_t max_connections() const { return max_connections_; }
  std::uint32_t active() const { return active_.load(std::memory_order_relaxed); }
  std::uint32_t pending() const { return pending_.load(std::memory_order_relaxed); }

 private:
  struct Waiter {
    explicit Waiter(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;  // woken (cancelled) on its own executor when granted
    bool granted = false;      // under mu_
  };
  bool try_take();

  const std::uint32_t max_connections_;
  const std::uint32_t max_pending_;
  std::atomic<std::uint32_t> active_{0};
  std::atomic<std::uint32_t> pending_{0};
  std::mutex mu_;
  std::deque<std::shared_ptr<Waiter>> waiters_;
};

}  // namespace meshd::proxy
