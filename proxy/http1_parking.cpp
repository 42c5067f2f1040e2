#include "proxy/http1_parking.hpp"

#include <sys/epoll.h>
#include <unistd.h>

#include <array>

namespace meshd::proxy {

Http1Parking::Http1Parking(asio::io_context& ioc, std::chrono::milliseconds idle_timeout, Resume resume,
                           Closed closed)
    : ioc_(ioc), idle_timeout_(idle_timeout), resume_(std::move(resume)), closed_(std::move(closed)), timer_(ioc) {}

Http1Parking::~Http1Parking() {
  while (!parked_.empty()) {
    Parked* p = &parked_.front();
    parked_.pop_front();
    if (p->fd >= 0) ::close(p->fd);
    free(p);
  }
  events_.reset();  // owns (and closes) epoll_
}

bool Http1Parking::start(std::vector<tcp> families) {
  families_ = std::move(families);
  epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  if (epoll_ < 0) return false;
  events_ = std::make_unique<asio::posix::stream_descriptor>(ioc_, epoll_);
  wait();
  return true;
}

void Http1Parking::stop() {
  stopping_ = true;
  close_all();
  timer_.cancel();
  error_code ec;
  if (events_) events_->cancel(ec);
}

void Http1Parking::park(tcp::socket socket, std::size_t slot, std::string peer, Clock::time_point idle_since) {
  auto* p = new (memory_.allocate(sizeof(Parked), alignof(Parked))) Parked;
  error_code ec;
  p->fd = socket.release(ec);  // out of Asio's reactor: into the parking set
  p->slot = static_cast<std::uint16_t>(slot);
  p->idle_since = idle_since;
  p->expires = idle_timeout_.count() > 0 ? idle_since + idle_timeout_ : Clock::time_point::max();
  p->peer = std::move(peer);
  auto it = parked_.insert(parked_.end(), *p);
  if (ec) {
    close(it);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLRDHUP;
  ev.data.ptr = &*it;
  if (::epoll_ctl(epoll_, EPOLL_CTL_ADD, it->fd, &ev) != 0) {
    close(it);
    return;
  }
  if (!timer_armed_ && it->expires != Clock::time_point::max()) expire();
}

void Http1Parking::wait() {
  events_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    if (ec || stopping_) return;
    resume_ready();
    wait();
  });
}

void Http1Parking::resume_ready() {
  std::array<epoll_event, 64> events;
  const int n = ::epoll_wait(epoll_, events.data(), static_cast<int>(events.size()), 0);
  for (int i = 0; i < n; ++i) {
    auto* p = static_cast<Parked*>(events[static_cast<std::size_t>(i)].data.ptr);
    auto it = parked_.iterator_to(*p);
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, it->fd, nullptr);
    // Readable: bytes of the next request, or the client's close (seen by the read).
    tcp::socket socket(ioc_);
    error_code ec;
    socket.assign(families_[it->slot], it->fd, ec);
    if (ec) {
      close(it);
      continue;
    }
    const std::size_t slot = it->slot;
    const auto idle_since = it->idle_since;
    std::string peer = std::move(it->peer);
    parked_.erase(it);
    free(p);
    resume_(std::move(socket), slot, std::move(peer), idle_since);
  }
}

void Http1Parking::close(ParkedList::iterator it) {
  if (it->fd >= 0) ::close(it->fd);  // leaves the parking set with it
  const std::size_t slot = it->slot;
  Parked* p = &*it;
  parked_.erase(it);
  free(p);
  closed_(slot);
}

void Http1Parking::free(Parked* p) {
  p->~Parked();
  memory_.deallocate(p, sizeof(Parked), alignof(Parked));
  if (parked_.empty()) memory_.release();  // the pool's blocks go back to malloc
}

void Http1Parking::expire() {
  // Closes parked connections past the idle timeout, then sleeps until the next one.
  const auto now = Clock::now();
  while (!parked_.empty() && parked_.front().expires <= now) close(parked_.begin());
  timer_armed_ = !parked_.empty() && parked_.front().expires != Clock::time_point::max();
  if (!timer_armed_) return;
  timer_.expires_at(parked_.front().expires);
  timer_.async_wait([this](const error_code& ec) {
    if (ec || stopping_) {
      timer_armed_ = false;
      return;
    }
    expire();
  });
}

void Http1Parking::close_all() {
  while (!parked_.empty()) close(parked_.begin());
}

}  // namespace meshd::proxy
