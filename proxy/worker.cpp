#include "proxy/worker.hpp"

#include <boost/asio/post.hpp>
#include <malloc.h>
#include <sys/epoll.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <unordered_set>

#include "proxy/downstream.hpp"

namespace meshd::proxy {

Worker::Worker(unsigned index, const Limits& limits)
    : index_(index),
      limits_(limits),
      ioc_(std::make_unique<asio::io_context>(1)),
      pool_(ioc_->get_executor()),
      rng_(std::random_device{}() + index),
      parked_timer_(std::make_unique<asio::steady_timer>(*ioc_)) {}

Worker::~Worker() {
  stop();
  pool_.clear();
  while (!parked_.empty()) {
    Parked* p = &parked_.front();
    parked_.pop_front();
    if (p->fd >= 0) ::close(p->fd);
    free_parked(p);
  }
  parked_timer_.reset();  // timers and descriptors before their io_context
  park_events_.reset();
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
  // The parking set: its descriptor is owned (and closed) by park_events_.
  park_epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (park_epoll_ >= 0) {
    park_events_ = std::make_unique<asio::posix::stream_descriptor>(*ioc_, park_epoll_);
    wait_parked();
  }
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
    close_all_parked();
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
    close_all_parked();
    parked_timer_->cancel();
    if (park_events_) park_events_->cancel(ec);
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
  return connections_.insert(connections_.end(), c);
}

void Worker::untrack(std::list<DownstreamConnection*>::iterator it) { connections_.erase(it); }

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
        {
          DownstreamConnection conn(*this, std::move(s), direction_of(slot), slot == 0 ? 0 : slot - 1,
                                    std::move(peer), idle_since);
          if (co_await conn.run() == DownstreamConnection::Outcome::park) {
            parked_since = conn.idle_since();
            parked_peer = conn.take_peer();
            parking.emplace(conn.take_socket());
          }
        }
        if (parking && !draining_ && !stopping_ && park_epoll_ >= 0) {
          park(std::move(*parking), slot, std::move(parked_peer), parked_since);
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

void Worker::park(tcp::socket socket, std::size_t slot, std::string peer, Clock::time_point idle_since) {
  const auto timeout = limits_.downstream_idle_timeout;
  auto* p = new (parked_memory_.allocate(sizeof(Parked), alignof(Parked))) Parked;
  error_code ec;
  p->fd = socket.release(ec);  // out of Asio's reactor: into the parking set
  p->slot = static_cast<std::uint16_t>(slot);
  p->idle_since = idle_since;
  p->expires = timeout.count() > 0 ? idle_since + timeout : Clock::time_point::max();
  p->peer = std::move(peer);
  auto it = parked_.insert(parked_.end(), *p);
  if (ec) {
    close_parked(it);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.ptr = &*it;
  if (::epoll_ctl(park_epoll_, EPOLL_CTL_ADD, it->fd, &ev) != 0) {
    close_parked(it);
    return;
  }
  if (!parked_timer_armed_ && it->expires != Clock::time_point::max()) expire_parked();
  maybe_trim();
}

void Worker::wait_parked() {
  park_events_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    if (ec || stopping_) return;
    unpark_ready();
    wait_parked();
  });
}

void Worker::unpark_ready() {
  std::array<epoll_event, 64> events;
  const int n = ::epoll_wait(park_epoll_, events.data(), static_cast<int>(events.size()), 0);
  for (int i = 0; i < n; ++i) {
    auto* p = static_cast<Parked*>(events[static_cast<std::size_t>(i)].data.ptr);
    auto it = parked_.iterator_to(*p);
    ::epoll_ctl(park_epoll_, EPOLL_CTL_DEL, it->fd, nullptr);
    // Readable: bytes of the next request, or the client's close (seen by the read).
    tcp::socket socket(*ioc_);
    error_code ec;
    socket.assign(family_[it->slot], it->fd, ec);
    if (ec) {
      close_parked(it);
      continue;
    }
    const std::size_t slot = it->slot;
    const auto idle_since = it->idle_since;
    std::string peer = std::move(it->peer);
    parked_.erase(it);
    free_parked(p);
    serve(std::move(socket), slot, std::move(peer), idle_since);
  }
}

void Worker::close_parked(ParkedList::iterator it) {
  if (it->fd >= 0) ::close(it->fd);  // leaves the parking set with it
  const std::size_t slot = it->slot;
  Parked* p = &*it;
  parked_.erase(it);
  free_parked(p);
  connection_closed(slot);
}

void Worker::free_parked(Parked* p) {
  p->~Parked();
  parked_memory_.deallocate(p, sizeof(Parked), alignof(Parked));
  if (parked_.empty()) parked_memory_.release();  // the pool's blocks go back to malloc
}

void Worker::expire_parked() {
  // Closes parked connections past the idle timeout, then sleeps until the next one.
  const auto now = Clock::now();
  while (!parked_.empty() && parked_.front().expires <= now) close_parked(parked_.begin());
  parked_timer_armed_ = !parked_.empty() && parked_.front().expires != Clock::time_point::max();
  if (!parked_timer_armed_) return;
  parked_timer_->expires_at(parked_.front().expires);
  parked_timer_->async_wait([this](const error_code& ec) {
    if (ec || stopping_) {
      parked_timer_armed_ = false;
      return;
    }
    expire_parked();
  });
}

void Worker::close_all_parked() {
  while (!parked_.empty()) close_parked(parked_.begin());
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
