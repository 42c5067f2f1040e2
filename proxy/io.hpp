#pragma once
// Asio pieces shared by the data path (included by its .cpp files only).
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <memory>

namespace meshd::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
template <class T>
using awaitable = asio::awaitable<T>;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using Clock = std::chrono::steady_clock;

// One timer per connection that cancels its socket's operations when a deadline
// passes (the way Beast's tcp_stream does), instead of racing every read against a
// timer. The coroutine then sees operation_aborted and asks fired() why; the socket
// stays open, so a 408 or 504 can still be written.
//
// Arming is cheap: it only records the deadline. The timer is (re)started only when
// the new deadline is earlier than the one it waits for; when it wakes up early
// (the deadline moved later, or was cleared) it sleeps again or stops. Re-arming a
// kernel timer for every read and write would cost a syscall each.
//
// The state lives in a shared block that the timer's handler holds: a completion
// already queued when the connection ends (and the Watchdog with it) then finds the
// watchdog detached instead of freed memory.
class Watchdog {
 public:
  explicit Watchdog(asio::any_io_executor ex) : state_(std::make_shared<State>(ex)) {}
  ~Watchdog() {
    state_->socket = nullptr;
    state_->deadline = Clock::time_point::max();
    state_->timer.cancel();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void arm(tcp::socket& socket, std::chrono::milliseconds after) {
    if (after.count() <= 0) {
      disarm();
      return;
    }
    arm_at(socket, Clock::now() + after);
  }
  // Arms for an absolute deadline (one that activity does not extend).
  void arm_at(tcp::socket& socket, Clock::time_point deadline) {
    auto& s = *state_;
    s.socket = &socket;
    s.fired = false;
    s.deadline = deadline;
    if (!s.waiting || s.deadline < s.expiry) start(state_);
  }
  void disarm() {
    state_->deadline = Clock::time_point::max();
    state_->fired = false;
  }
  bool fired() const { return state_->fired; }

 private:
  struct State {
    explicit State(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    tcp::socket* socket = nullptr;  // null once the Watchdog is gone
    Clock::time_point deadline = Clock::time_point::max();
    Clock::time_point expiry = Clock::time_point::max();
    std::uint64_t generation = 0;
    bool waiting = false;
    bool fired = false;
  };

  static void start(const std::shared_ptr<State>& state) {
    auto& s = *state;
    s.expiry = s.deadline;
    s.waiting = true;
    const auto generation = ++s.generation;
    s.timer.expires_at(s.expiry);
    s.timer.async_wait([state, generation](const error_code& ec) {
      auto& st = *state;
      if (ec) return;  // replaced by a newer wait, or the watchdog is gone
      if (generation != st.generation) return;
      st.waiting = false;
      if (st.deadline == Clock::time_point::max() || st.socket == nullptr) return;  // disarmed or gone
      if (Clock::now() < st.deadline) {
        start(state);  // the deadline moved later
        return;
      }
      st.fired = true;
      error_code ignored;
      st.socket->cancel(ignored);
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace meshd::proxy
