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
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>

namespace meshd::proxy {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
template <class T>
using awaitable = asio::awaitable<T>;
inline constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
using Clock = std::chrono::steady_clock;

// The byte stream under a codec adapter. Plain TCP today; TLS (issue 13) becomes a
// second kind behind the same members, so that the adapters and the Watchdog do not
// name tcp::socket. Reads and writes may be under way at the same time (one of each).
class ByteStream {
 public:
  explicit ByteStream(tcp::socket socket) : socket_(std::move(socket)) {}
  explicit ByteStream(asio::any_io_executor ex) : socket_(ex) {}

  template <class Buffers>
  auto async_read_some(const Buffers& b) {
    return socket_.async_read_some(b, use_tuple);
  }
  template <class Buffers>
  auto async_write(const Buffers& b) {
    return asio::async_write(socket_, b, use_tuple);
  }
  auto async_wait_readable() { return socket_.async_wait(tcp::socket::wait_read, use_tuple); }
  // What can be read now without waiting (0 with would_block when nothing).
  template <class Buffers>
  std::size_t read_now(const Buffers& b, error_code& ec) {
    if (!user_non_blocking_) {
      socket_.non_blocking(true, ec);
      if (ec) return 0;
      user_non_blocking_ = true;
    }
    return socket_.read_some(b, ec);
  }
  // Cancels the operations under way (they complete with operation_aborted).
  void cancel() {
    error_code ignored;
    socket_.cancel(ignored);
  }
  // Ends the stream so that the peer sees an abort (TCP RST), not a clean end: a
  // response cut short must never look complete.
  void abort() {
    error_code ignored;
    socket_.set_option(asio::socket_base::linger(true, 0), ignored);
    socket_.close(ignored);
  }
  void shutdown_send() {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_send, ignored);
  }
  void shutdown_both() {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
  }
  void close() {
    error_code ignored;
    socket_.close(ignored);
  }
  bool is_open() const { return socket_.is_open(); }
  int native_handle() { return socket_.native_handle(); }
  tcp::socket& tcp_socket() { return socket_; }  // connect, options, parking, addresses

 private:
  tcp::socket socket_;
  bool user_non_blocking_ = false;
};

// A wake-up for one coroutine waiting on its thread's io_context (an HTTP/2 stream
// waiting for body bytes or for room to send, a connection's writer waiting for
// frames). notify() before or during wait() ends that wait: a notification is kept
// until taken. A steady_timer that is cancelled to wake (no system call while the
// wait has no deadline: the timer never reaches the kernel's timer queue's front).
class Signal {
 public:
  explicit Signal(asio::any_io_executor ex) : timer_(ex) {}
  // Until notified, or `deadline`; false when the deadline came first.
  awaitable<bool> wait(Clock::time_point deadline = Clock::time_point::max()) {
    if (!set_) {
      timer_.expires_at(deadline);
      auto [ec] = co_await timer_.async_wait(use_tuple);
      static_cast<void>(ec);  // cancelled (notified) or expired: set_ says which
    }
    const bool notified = set_;
    set_ = false;
    co_return notified;
  }
  void notify() {
    set_ = true;
    timer_.cancel();
  }

 private:
  asio::steady_timer timer_;
  bool set_ = false;
};

// One timer per connection that cancels its stream's operations when a deadline
// passes (the way Beast's tcp_stream does), instead of racing every read against a
// timer. The coroutine then sees operation_aborted and asks fired() why; the stream
// stays open, so a 408 or 504 can still be written.
//
// Two deadlines, one for reading and one for writing, since a request body and a
// response are pumped at the same time on one connection (each side arms its own);
// the timer waits for the earlier one. A stream has one cancel: a deadline that
// passes aborts the other side's operation too, which ends without its fired() set
// and is taken as the exchange failing (the timed-out side reports the timeout).
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
  enum Slot : std::uint8_t { read = 0, write = 1 };

  explicit Watchdog(asio::any_io_executor ex) : state_(std::make_shared<State>(ex)) {}
  ~Watchdog() {
    state_->stream = nullptr;
    state_->deadline = {Clock::time_point::max(), Clock::time_point::max()};
    state_->timer.cancel();
  }
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  void arm(ByteStream& stream, std::chrono::milliseconds after, Slot slot = read) {
    if (after.count() <= 0) {
      disarm(slot);
      return;
    }
    arm_at(stream, Clock::now() + after, slot);
  }
  // Arms for an absolute deadline (one that activity does not extend).
  void arm_at(ByteStream& stream, Clock::time_point deadline, Slot slot = read) {
    auto& s = *state_;
    s.stream = &stream;
    s.fired[slot] = false;
    s.deadline[slot] = deadline;
    if (!s.waiting || deadline < s.expiry) start(state_);
  }
  void disarm(Slot slot = read) {
    state_->deadline[slot] = Clock::time_point::max();
    state_->fired[slot] = false;
  }
  bool fired(Slot slot = read) const { return state_->fired[slot]; }

 private:
  struct State {
    explicit State(asio::any_io_executor ex) : timer(ex) {}
    asio::steady_timer timer;
    ByteStream* stream = nullptr;  // null once the Watchdog is gone
    std::array<Clock::time_point, 2> deadline{Clock::time_point::max(), Clock::time_point::max()};
    Clock::time_point expiry = Clock::time_point::max();
    std::uint64_t generation = 0;
    bool waiting = false;
    std::array<bool, 2> fired{false, false};
    Clock::time_point earliest() const { return std::min(deadline[0], deadline[1]); }
  };

  static void start(const std::shared_ptr<State>& state) {
    auto& s = *state;
    s.expiry = s.earliest();
    s.waiting = true;
    const auto generation = ++s.generation;
    s.timer.expires_at(s.expiry);
    s.timer.async_wait([state, generation](const error_code& ec) {
      auto& st = *state;
      if (ec) return;  // replaced by a newer wait, or the watchdog is gone
      if (generation != st.generation) return;
      st.waiting = false;
      if (st.earliest() == Clock::time_point::max() || st.stream == nullptr) return;  // disarmed or gone
      const auto now = Clock::now();
      if (now < st.earliest()) {
        start(state);  // the deadline moved later
        return;
      }
      for (std::size_t i = 0; i < 2; ++i) {
        if (st.deadline[i] <= now) st.fired[i] = true;
      }
      st.stream->cancel();
      // The slot that fired is done (fired() stays true until its owner re-arms or
      // disarms it); the other keeps its deadline, so wait for that one.
      for (std::size_t i = 0; i < 2; ++i) {
        if (st.fired[i]) st.deadline[i] = Clock::time_point::max();
      }
      if (st.earliest() != Clock::time_point::max()) start(state);
    });
  }

  std::shared_ptr<State> state_;
};

}  // namespace meshd::proxy
