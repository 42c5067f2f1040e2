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
class Watchdog {
 public:
  explicit Watchdog(asio::any_io_executor ex) : timer_(ex) {}
  void arm(tcp::socket& socket, std::chrono::milliseconds after) {
    if (after.count() <= 0) {
      disarm();
      return;
    }
    arm_at(socket, Clock::now() + after);
  }
  // Arms for an absolute deadline (one that activity does not extend).
  void arm_at(tcp::socket& socket, Clock::time_point deadline) {
    socket_ = &socket;
    fired_ = false;
    deadline_ = deadline;
    if (!waiting_ || deadline_ < expiry_) start();
  }
  void disarm() {
    deadline_ = Clock::time_point::max();
    fired_ = false;
  }
  bool fired() const { return fired_; }

 private:
  void start() {
    expiry_ = deadline_;
    waiting_ = true;
    const auto generation = ++generation_;
    timer_.expires_at(expiry_);
    timer_.async_wait([this, generation](const error_code& ec) {
      if (ec) return;  // replaced by a newer wait, or the watchdog is gone
      if (generation != generation_) return;
      waiting_ = false;
      if (deadline_ == Clock::time_point::max()) return;  // disarmed meanwhile
      if (Clock::now() < deadline_) {
        start();  // the deadline moved later
        return;
      }
      fired_ = true;
      error_code ignored;
      socket_->cancel(ignored);
    });
  }

  asio::steady_timer timer_;
  tcp::socket* socket_ = nullptr;
  Clock::time_point deadline_ = Clock::time_point::max();
  Clock::time_point expiry_ = Clock::time_point::max();
  std::uint64_t generation_ = 0;
  bool waiting_ = false;
  bool fired_ = false;
};

}  // namespace meshd::proxy
