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
class Watchdog {
 public:
  explicit Watchdog(asio::any_io_executor ex) : timer_(ex) {}
  void arm(tcp::socket& socket, std::chrono::milliseconds after) {
    fired_ = false;
    if (after.count() <= 0) {
      timer_.cancel();
      return;
    }
    timer_.expires_after(after);
    timer_.async_wait([this, &socket](const error_code& ec) {
      if (ec) return;
      fired_ = true;
      error_code ignored;
      socket.cancel(ignored);
    });
  }
  // Arms only if not armed yet (a deadline that activity does not extend).
  void arm_at(tcp::socket& socket, Clock::time_point deadline) {
    arm(socket, std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()) +
                    std::chrono::milliseconds(1));
  }
  void disarm() {
    timer_.cancel();
    fired_ = false;
  }
  bool fired() const { return fired_; }

 private:
  asio::steady_timer timer_;
  bool fired_ = false;
};

}  // namespace meshd::proxy
