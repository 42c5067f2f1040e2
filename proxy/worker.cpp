#include "proxy/worker.hpp"

#include <boost/asio/post.hpp>
#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <unordered_set>

#include "proxy/downstream.hpp"
#include "proxy/http2_server.hpp"

namespace meshd::proxy {

Worker::Worker(unsigned index, const Limits& limits)
    : index_(index),
      limits_(limits),
      ioc_(std::make_unique<asio::io_context>(1)),
      pool_(ioc_->get_executor()),
      rng_(std::random_device{}() + index),
      parking_(std::make_unique<Http1Parking>(
          *ioc_, limits.downstream_idle_timeout,
          [this](tcp::socket s, std::size_t slot, std::string peer, Clock::time_point idle_since) {
            serve(std::move(s), slot, std::move(peer), idle_since);
          },
          [this](std::size_t slot) { connection_closed(slot); })) {
  Http2ClientLimits h2;
  h2.initial_stream_window = static_cast<std::uint32_t>(limits.h2_initial_window_bytes);
  h2.connection_window = static_cast<std::uint32_t>(limits.h2_connection_window_bytes);
  h2.max_header_list_bytes = static_cast<std::uint32_t>(limits.h2_max_header_list_bytes);
  pool_.set_http2_limits(h2, limits.h2_keepalive_interval);
}

Worker::~Worker() {
  stop();
  pool_.shutdown();  // its connections and timer before their io_context
  parking_.reset();  // its timer and descriptor before their io_context
  acceptors_.clear();
  ioc_.reset();  // destroys what is left of the connections' coroutines
}

void Worker::start(int egress_fd, const std::vector<int>& ingress_fds) {
  // Listening descriptors are IPv4 or IPv6 as bound by net::ListenSockets.
  auto family_of = [](int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
  };
  std::vector<int> fds{egress_fd};
  fds.insert(fds.end(), ingress_fds.begin(), ingress_fds.end());
  per_listener_.assign(fds.size(), 0);
  for (std::size_t slot = 0; slot < fds.size(); ++slot) {
    // Accepted sockets have their listener's family (IPv4-mapped ones included).
    family_.push_back(family_of(fds[slot]));
    acceptors_.push_back(std::make_unique<tcp::acceptor>(*ioc_));
    acceptors_.back()->assign(family_.back(), fds[slot]);
    asio::co_spawn(*ioc_, accept_loop(*acceptors_.back(), slot), asio::detached);
  }
  asio::co_spawn(*ioc_, sweep_loop(), asio::detached);
  parking_->start(family_);
  thread_ = std::thread([this] {
    ioc_->run();
  });
}

void Worker::set_view(std::shared_ptr<const RuntimeView> view) {
  asio::post(*ioc_, [this, view = std::move(view)]() mutable {
    if (view_ && view->snap != view_->snap) round_robin_.clear();
    view_ = std::move(view);
    // Pooled connections to endpoints that are gone drain away now; requests in
    // flight keep their own connection and view.
    std::unordered_set<const mesh::Endpoint*> keep;
    for (const auto& in : view_->ingress) {
      if (in.app) keep.insert(in.app.get());
    }
    for (const auto& c : *view_->endpoints) {
      for (const auto& e : c->endpoints) keep.insert(e.get());
    }
    pool_.retain(std::move(keep));
  });
}

void Worker::begin_drain() {
  asio::post(*ioc_, [this] {
    draining_ = true;
    for (auto* c : connections_) c->close_if_idle();
    parking_->close_all();
    pool_.clear();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  asio::post(*ioc_, [this] {
    stopping_ = true;
    error_code ec;
    for (auto& a : acceptors_) a->close(ec);
    for (auto* c : connections_) c->close();
    parking_->stop();
    pool_.clear();
  });
  // Let the connections finish unwinding, then stop.
  asio::post(*ioc_, [this] { ioc_->stop(); });
  thread_.join();
}

std::future<metrics::Shard> Worker::scrape() {
  auto promise = std::make_shared<std::promise<metrics::Shard>>();
  auto future = promise->get_future();
  asio::post(*ioc_, [this, promise] { promise->set_value(stats_); });
  return future;
}

std::uint32_t Worker::next_round_robin(std::size_t cluster) {
  if (cluster >= round_robin_.size()) round_robin_.resize(cluster + 1, static_cast<std::uint32_t>(index_));
  return round_robin_[cluster]++;
}

std::list<ServedConnection*>::iterator Worker::track(ServedConnection* c) {
  return connections_.insert(connections_.end(), c);
}

void Worker::untrack(std::list<ServedConnection*>::iterator it) { connections_.erase(it); }

void Worker::connection_closed(std::size_t slot) {
  --per_listener_[slot];
  --stats_.downstream_connections[static_cast<std::size_t>(direction_of(slot))];
  open_connections_.fetch_sub(1, std::memory_order_relaxed);
  maybe_trim();
}

void Worker::serve(tcp::socket socket, std::size_t slot, std::string peer, std::optional<Clock::time_point> idle_since) {
  active_peak_ = std::max(active_peak_, connections_.size() + 1);
  asio::co_spawn(
      *ioc_,
      [this, slot, s = std::move(socket), peer = std::move(peer), idle_since]() mutable -> awaitable<void> {
        std::optional<tcp::socket> parking;
        std::string parked_peer;
        Clock::time_point parked_since;
        std::unique_ptr<Http2Connection> h2;
        {
          DownstreamConnection conn(*this, std::move(s), direction_of(slot), slot == 0 ? 0 : slot - 1,
                                    std::move(peer), idle_since);
          const auto outcome = co_await conn.run();
          if (outcome == DownstreamConnection::Outcome::park) {
            parked_since = conn.idle_since();
            parked_peer = conn.take_peer();
            parking.emplace(conn.take_socket());
          } else if (outcome == DownstreamConnection::Outcome::http2) {
            // SPEC §7: the connection began with HTTP/2's preface.
            std::string first = conn.take_buffered();
            h2 = std::make_unique<Http2Connection>(*this, conn.take_socket(), direction_of(slot),
                                                   slot == 0 ? 0 : slot - 1, conn.take_peer(), std::move(first));
          }
        }
        if (h2) {
          // Its own coroutine: this frame (which has room for a whole HTTP/1.1
          // connection) ends now instead of staying for the HTTP/2 connection's life.
          asio::co_spawn(
              *ioc_,
              [this, slot, c = std::move(h2)]() mutable -> awaitable<void> {
                co_await c->run();
                c.reset();
                connection_closed(slot);
              },
              asio::detached);
          co_return;
        }
        if (parking && !draining_ && !stopping_ && parking_->usable()) {
          parking_->park(std::move(*parking), slot, std::move(parked_peer), parked_since);
          maybe_trim();
        } else {
          if (parking) {
            error_code ec;
            parking->close(ec);
          }
          connection_closed(slot);
        }
      },
      asio::detached);
}

void Worker::maybe_trim() {
  // After a wave of connections ends (the number of connections with a coroutine fell
  // by kTrimAfterDrop since its peak), the memory their coroutines and buffers used is
  // free but still mapped: give it back to the system (bench/compare.sh (e), the
  // 5,000-connection test in tests/integration/test_faults.py).
  if (active_peak_ >= connections_.size() + kTrimAfterDrop) {
    ::malloc_trim(0);
    active_peak_ = connections_.size();
  }
}

awaitable<void> Worker::accept_loop(tcp::acceptor& acceptor, std::size_t slot) {
  const auto d = static_cast<std::size_t>(direction_of(slot));
  asio::steady_timer pause(*ioc_);
  while (!stopping_) {
    // Over max_connections_per_listener, accepting pauses (the kernel queues).
    if (per_listener_[slot] >= limits_.max_connections_per_listener) {
      pause.expires_after(std::chrono::milliseconds(10));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || stopping_) co_return;
      // EMFILE and the like: back off briefly instead of spinning.
      pause.expires_after(std::chrono::milliseconds(10));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (!view_) continue;  // not configured yet: the connection closes
    ++per_listener_[slot];
    ++stats_.downstream_connections[d];
    open_connections_.fetch_add(1, std::memory_order_relaxed);
    serve(std::move(socket), slot, {}, std::nullopt);
  }
}

awaitable<void> Worker::sweep_loop() {
  asio::steady_timer timer(*ioc_);
  while (!stopping_) {
    timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await timer.async_wait(use_tuple);
    if (ec) co_return;
    pool_.sweep();
  }
}

}  // namespace meshd::proxy
