#include "proxy/upstream.hpp"

#include "net/asio_address.hpp"

#include <netinet/tcp.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace meshd::proxy {

UpstreamConnection::~UpstreamConnection() {
  if (endpoint) endpoint->connections.fetch_sub(1, std::memory_order_relaxed);
  if (gauge != nullptr) --*gauge;
}

namespace {

// Whether an idle socket is still usable: no EOF, no error, no stray bytes.
bool still_good(tcp::socket& s) {
  char byte;
  const ssize_t n = ::recv(s.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

}  // namespace

awaitable<std::unique_ptr<UpstreamConnection>> UpstreamPool::acquire(std::shared_ptr<mesh::Endpoint> ep,
                                                                     std::chrono::milliseconds connect_timeout,
                                                                     HeadLimits limits, std::int64_t* gauge,
                                                                     error_code& ec) {
  ec.clear();
  if (auto it = idle_.find(ep.get()); it != idle_.end()) {
    auto& list = it->second;
    while (!list.empty()) {
      Idle idle = std::move(list.back());
      list.pop_back();
      const auto now = Clock::now();
      if (now < idle.expires && (now - idle.released < kPeekAfter || still_good(idle.conn->socket))) {
        idle.conn->reused = true;
        co_return std::move(idle.conn);
      }
    }
  }
  auto conn = std::make_unique<UpstreamConnection>(ex_, ep, limits);
  ep->connections.fetch_add(1, std::memory_order_relaxed);
  conn->gauge = gauge;
  ++*gauge;
  conn->watchdog.arm(conn->socket, connect_timeout);
  auto [err] = co_await conn->socket.async_connect(tcp::endpoint(net::to_asio(ep->ip), ep->port), use_tuple);
  const bool timed_out = conn->watchdog.fired();
  conn->watchdog.disarm();
  if (err) {
    ec = timed_out ? make_error_code(asio::error::timed_out) : err;
    co_return nullptr;
  }
  error_code ignored;
  conn->socket.set_option(tcp::no_delay(true), ignored);
  co_return conn;
}

void UpstreamPool::release(std::unique_ptr<UpstreamConnection> c, std::chrono::milliseconds idle_timeout,
                           std::size_t max_idle) {
  if (!c || !c->socket.is_open() || !c->buffer.empty() || idle_timeout.count() <= 0) return;
  if (live_ && !live_->contains(c->endpoint.get())) return;  // removed while in use
  auto& list = idle_[c->endpoint.get()];
  if (list.size() >= max_idle) return;
  c->buffer.release_if_empty();  // an idle connection keeps no buffer
  const auto now = Clock::now();
  list.push_back({std::move(c), now, now + idle_timeout});
}

void UpstreamPool::sweep() {
  const auto now = Clock::now();
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    std::erase_if(list, [&](const Idle& i) { return now >= i.expires || !i.conn->socket.is_open(); });
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

void UpstreamPool::retain(std::unordered_set<const mesh::Endpoint*> keep) {
  live_ = std::move(keep);
  for (auto it = idle_.begin(); it != idle_.end();) {
    it = live_->contains(it->first) ? std::next(it) : idle_.erase(it);
  }
}

std::size_t UpstreamPool::idle_count() const {
  std::size_t n = 0;
  for (const auto& [_, list] : idle_) n += list.size();
  return n;
}

}  // namespace meshd::proxy
