#include "proxy/worker.hpp"

#include <boost/asio/post.hpp>
#include <unordered_set>

#include "proxy/downstream.hpp"

namespace meshd::proxy {

Worker::Worker(unsigned index, const Limits& limits)
    : index_(index),
      limits_(limits),
      ioc_(std::make_unique<asio::io_context>(1)),
      pool_(ioc_->get_executor()),
      rng_(std::random_device{}() + index) {}

Worker::~Worker() {
  stop();
  pool_.clear();
  egress_.reset();
  ingress_.reset();
  ioc_.reset();  // destroys what is left of the connections' coroutines
}

void Worker::start(int egress_fd, int ingress_fd) {
  egress_ = std::make_unique<tcp::acceptor>(*ioc_);
  ingress_ = std::make_unique<tcp::acceptor>(*ioc_);
  // Listening descriptors are IPv4 or IPv6 as bound by net::ListenSockets.
  auto family_of = [](int fd) {
    sockaddr_storage addr{};
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    return addr.ss_family == AF_INET6 ? tcp::v6() : tcp::v4();
  };
  egress_->assign(family_of(egress_fd), egress_fd);
  ingress_->assign(family_of(ingress_fd), ingress_fd);
  asio::co_spawn(*ioc_, accept_loop(*egress_, metrics::Direction::egress), asio::detached);
  asio::co_spawn(*ioc_, accept_loop(*ingress_, metrics::Direction::ingress), asio::detached);
  asio::co_spawn(*ioc_, sweep_loop(), asio::detached);
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
    if (view_->app) keep.insert(view_->app.get());
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
    pool_.clear();
  });
}

void Worker::stop() {
  if (!thread_.joinable()) return;
  asio::post(*ioc_, [this] {
    stopping_ = true;
    error_code ec;
    if (egress_) egress_->close(ec);
    if (ingress_) ingress_->close(ec);
    for (auto* c : connections_) c->socket().close(ec);
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

std::list<DownstreamConnection*>::iterator Worker::track(DownstreamConnection* c) {
  open_connections_.fetch_add(1, std::memory_order_relaxed);
  return connections_.insert(connections_.end(), c);
}

void Worker::untrack(std::list<DownstreamConnection*>::iterator it) {
  connections_.erase(it);
  open_connections_.fetch_sub(1, std::memory_order_relaxed);
}

awaitable<void> Worker::accept_loop(tcp::acceptor& acceptor, metrics::Direction direction) {
  const auto d = static_cast<std::size_t>(direction);
  asio::steady_timer pause(*ioc_);
  while (!stopping_) {
    // Over max_connections_per_listener, accepting pauses (the kernel queues).
    if (per_listener_[d] >= limits_.max_connections_per_listener) {
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
    ++per_listener_[d];
    ++stats_.downstream_connections[d];
    asio::co_spawn(
        *ioc_,
        [this, d, direction, s = std::move(socket)]() mutable -> awaitable<void> {
          {
            DownstreamConnection conn(*this, std::move(s), direction);
            co_await conn.run();
          }
          --per_listener_[d];
          --stats_.downstream_connections[d];
        },
        asio::detached);
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
