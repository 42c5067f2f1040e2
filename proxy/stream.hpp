#pragma once
// The two interfaces the request lifecycle talks to (DESIGN "The protocol seam"):
// a DownstreamStream is one request/response exchange on an accepted connection, an
// UpstreamExchange one request on a pooled upstream connection. The HTTP/1.1 server
// and client adapters (downstream.hpp, upstream.hpp) implement them today; HTTP/2
// streams and TLS byte streams slot in under the same interfaces.
#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "metrics/stats.hpp"
#include "proxy/errors.hpp"
#include "proxy/io.hpp"
#include "proxy/message.hpp"

namespace meshd::proxy {

class Worker;

class DownstreamStream {
 public:
  virtual ~DownstreamStream() = default;

  virtual const RequestHead& request() const = 0;
  // The next piece of the request body (an adapter that owes the client a
  // "100 Continue" sends it on the first call). `idle`: how long it may stall.
  virtual awaitable<BodyEvent> read_body(std::chrono::milliseconds idle) = 0;
  // Stops a read_body() under way (it returns a reset): used when the response
  // ended before the request body did.
  virtual void cancel_read() = 0;

  // The response, in order: interim heads (1xx; dropped where the client cannot take
  // them), one head, data, end (with its last piece, maybe empty, and trailers, which
  // an adapter may have to drop). The head is held back to go out with the first
  // data (one send for a small response). False: the client is gone (nothing more
  // can be sent).
  virtual awaitable<bool> send_interim(const ResponseHead& head) = 0;
  virtual void send_head(const ResponseHead& head) = 0;
  // Sends a head held back (before waiting for more of the upstream's bytes).
  virtual awaitable<bool> flush() = 0;
  virtual awaitable<bool> send_data(std::string_view piece) = 0;
  virtual awaitable<bool> send_end(std::string_view last_piece, std::span<const Field> trailers) = 0;
  // The response cannot complete after its head went out: the client must see it cut
  // short (a reset), never complete.
  virtual void abort() = 0;
  // meshd's own answer (SPEC §3), as a whole response.
  virtual awaitable<void> send_local_reply(LocalReply r, std::string_view detail, std::uint32_t retry_after = 0) = 0;
  // The connection ends after this exchange (the adapter says so to the client).
  virtual void close_after() = 0;

  // For routing, logs and metrics.
  virtual metrics::Direction direction() const = 0;
  // Ingress: which of the node's served listeners took it (RuntimeView::ingress).
  virtual std::size_t listener() const = 0;
  virtual const std::string& peer() const = 0;      // the client's IP
  virtual std::string remote_address() = 0;         // IP:PORT (a system call)
  virtual std::string local_address() = 0;          // IP:PORT (a system call)
  virtual int status_sent() const = 0;              // 0: nothing sent yet
  virtual std::uint64_t bytes_sent() const = 0;     // response body and head bytes
  virtual Worker& worker() = 0;
};

class UpstreamExchange {
 public:
  virtual ~UpstreamExchange() = default;

  // The head with the first body bytes (`end`: the request ends with them).
  virtual awaitable<std::optional<Error>> send_head(const OutgoingRequest& r, std::string_view body, bool end) = 0;
  virtual awaitable<std::optional<Error>> send_data(std::string_view piece, std::chrono::milliseconds idle) = 0;
  virtual awaitable<std::optional<Error>> send_end(std::span<const Field> trailers) = 0;
  // The next response head, interim (1xx) or final, by `deadline`.
  virtual awaitable<std::optional<Error>> read_head(Clock::time_point deadline, bool per_try, ResponseHead& out) = 0;
  // The next piece of the response body, by `deadline`.
  virtual awaitable<BodyEvent> read_body(Clock::time_point deadline) = 0;
  // The next piece when it is here already (no waiting), else nullopt. A data
  // piece handed out before stays valid until the next read_body().
  virtual std::optional<BodyEvent> next_body() = 0;
  // Stops whatever I/O is under way; the exchange cannot be reused.
  virtual void abandon() = 0;

  virtual bool reused() const = 0;     // the connection carried an exchange before
  virtual bool wrote_any() const = 0;  // some byte of this request went out
  // The exchange ended cleanly both ways and its connection may carry another.
  virtual bool reusable() const = 0;
  // An exchange on a shared (multiplexed) connection, which stays with the pool
  // whatever happens to this exchange: it takes the idle timeout the connection is
  // then kept for, and true; an exclusive one (HTTP/1.1) says false.
  virtual bool release_shared(std::chrono::milliseconds /*idle_timeout*/) { return false; }
};

}  // namespace meshd::proxy
