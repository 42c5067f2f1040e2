#include "proxy/app_limit.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>

namespace meshd::proxy {

bool AppPoolLimit::try_take() {
  auto active = active_.load(std::memory_order_relaxed);
  while (active < max_connections_) {
    if (active_.compare_exchange_weak(active, active + 1, std::memory_order_relaxed)) return true;
  }
  return false;
}

awaitable<bool> AppPoolLimit::acquire(asio::any_io_executor ex, Clock::time_point give_up) {
  if (try_take()) co_return true;
  if (pending_.fetch_add(1, std::memory_order_relaxed) >= max_pending_) {
    pending_.fetch_sub(1, std::memory_order_relaxed);
    co_return false;
  }
  auto w = std::make_shared<Waiter>(ex);
  {
    std::lock_guard lock(mu_);
    // A slot may have come back between try_take() and here, with nobody in line
    // to hand it to.
    if (try_take()) {
      pending_.fetch_sub(1, std::memory_order_relaxed);
      co_return true;
    }
    waiters_.push_back(w);
  }
  w->timer.expires_at(give_up);
  co_await w->timer.async_wait(use_tuple);
  bool got;
  {
    std::lock_guard lock(mu_);
    got = w->granted;
    if (!got) std::erase(waiters_, w);  // timed out: leave the line
  }
  pending_.fetch_sub(1, std::memory_order_relaxed);
  co_return got;
}

void AppPoolLimit::release() {
  if (pending_.load(std::memory_order_relaxed) > 0) {
    std::shared_ptr<Waiter> next;
    {
      std::lock_guard lock(mu_);
      if (!waiters_.empty()) {
        next = std::move(waiters_.front());
        waiters_.pop_front();
        next->granted = true;  // the slot passes to it: active_ stays
      }
    }
    if (next) {
      auto ex = next->timer.get_executor();
      asio::post(ex, [next] { next->timer.cancel(); });
      return;
    }
  }
  active_.fetch_sub(1, std::memory_order_relaxed);
}

}  // namespace meshd::proxy
