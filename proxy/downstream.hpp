#pragma once
// One accepted connection: reads requests (pipelined ones are answered in order, one
// at a time), enforces the header deadline and the idle timeout, hands each request
// to a RequestLifecycle, and answers what meshd answers itself.
#include <array>
#include <list>
#include <optional>
#include <string>
#include <string_view>

#include "metrics/stats.hpp"
#include "net/byte_buffer.hpp"
#include "proxy/http1_codec.hpp"
#include "proxy/io.hpp"
#include "proxy/local_reply.hpp"

namespace meshd::proxy {

class Worker;

class DownstreamConnection {
 public:
  // A keep-alive connection idle this long is parked by its worker: its coroutines
  // end and only the socket and a few bytes stay (Worker::park), so that thousands of
  // idle connections cost little memory. It comes back when the client sends again.
  static constexpr std::chrono::milliseconds kParkAfter{250};

  // `peer` is empty for a new connection (it is looked up); a connection coming back
  // from parking brings it, with the time it became idle.
  DownstreamConnection(Worker& worker, tcp::socket socket, metrics::Direction direction, std::string peer = {},
                       std::optional<Clock::time_point> idle_since = std::nullopt);
  ~DownstreamConnection();
  enum class Outcome { closed, park };
  // Serves requests until the connection closes (its socket closed) or has been idle
  // kParkAfter (its socket left open, for take_socket()).
  awaitable<Outcome> run();
  tcp::socket take_socket() { return std::move(socket_); }
  std::string take_peer() { return std::move(peer_); }
  // When the connection became idle (set when run() returns park).
  Clock::time_point idle_since() const { return idle_since_.value_or(Clock::now()); }

  // For the request lifecycle.
  struct BodyPiece {
    enum class Kind { data, end, error, timeout, closed } kind = Kind::end;
    std::string_view data;  // valid until the next read_body()
  };
  awaitable<BodyPiece> read_body(std::chrono::milliseconds idle);
  // Up to four pieces in one gathered send (empty ones are skipped); false when the
  // write failed (the connection then closes).
  awaitable<bool> write_gather(std::array<std::string_view, 4> pieces);
  awaitable<bool> write(std::string_view bytes) { return write_gather({bytes, {}, {}, {}}); }
  // Writes meshd's own answer (SPEC §3 table) and, for errors, marks the connection to close.
  awaitable<void> reply(LocalReply r, std::string_view detail, bool close = false, std::uint32_t retry_after = 0);

  const MessageHead& head() const { return parser_.head(); }
  metrics::Direction direction() const { return direction_; }
  const std::string& peer() const { return peer_; }
  bool keep_alive() const { return keep_alive_; }
  void set_close() { keep_alive_ = false; }
  Worker& worker() { return worker_; }
  tcp::socket& socket() { return socket_; }
  // Called by the worker when draining: closes the connection now if it is idle.
  void close_if_idle();
  // The response status sent, for logs (0 if none yet).
  int status_sent = 0;
  std::uint64_t bytes_sent = 0;

 private:
  enum class HeadResult { head, closed, park };
  awaitable<HeadResult> read_head();
  awaitable<void> drain_request_body();

  Worker& worker_;
  tcp::socket socket_;
  Watchdog watchdog_;
  metrics::Direction direction_;
  Http1Parser parser_;
  net::ByteBuffer buffer_;
  std::size_t pending_consume_ = 0;  // bytes of buffer_ handed out as body, consumed on the next read
  std::string peer_;
  bool keep_alive_ = true;
  bool idle_ = true;
  bool body_done_ = true;
  std::optional<Clock::time_point> idle_since_;  // set while waiting for a request
  std::list<DownstreamConnection*>::iterator tracked_;
};

}  // namespace meshd::proxy
