#pragma once
// Parking of idle HTTP/1.1 keep-alive connections, a feature of the HTTP/1.1 server
// adapter (DownstreamConnection::run returns `park` after kParkAfter idle). A parked
// connection has no coroutine, no parser, no buffer, not even an Asio socket: its
// descriptor waits in a per-worker epoll set (about 100 bytes of meshd memory per
// connection) until the client sends again or the idle timeout passes. One per
// worker, on the worker's thread.
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/intrusive/list.hpp>

#include <functional>
#include <memory>
#include <memory_resource>
#include <string>
#include <vector>

#include "proxy/io.hpp"

namespace meshd::proxy {

class Http1Parking {
 public:
  // `resume(socket, slot, peer, idle_since)`: the client sent again; `closed(slot)`: a
  // parked connection ended (idle timeout, drain, stop, the client's close).
  using Resume = std::function<void(tcp::socket, std::size_t, std::string, Clock::time_point)>;
  using Closed = std::function<void(std::size_t)>;
  Http1Parking(asio::io_context& ioc, std::chrono::milliseconds idle_timeout, Resume resume, Closed closed);
  ~Http1Parking();

  // Opens the epoll set; false when it cannot (connections then close instead).
  bool start(std::vector<tcp> families);
  bool usable() const { return epoll_ >= 0; }
  // Parks a connection of listening slot `slot`, idle since `idle_since`.
  void park(tcp::socket socket, std::size_t slot, std::string peer, Clock::time_point idle_since);
  void close_all();  // drain and stop
  void stop();       // no more waits (the worker is stopping)
  std::size_t size() const { return parked_.size(); }

 private:
  // Oldest first, so the front is the next to reach the idle timeout.
  struct Parked : boost::intrusive::list_base_hook<boost::intrusive::link_mode<boost::intrusive::normal_link>> {
    int fd = -1;
    std::uint16_t slot = 0;  // the listening slot (0: egress, 1 + i: ingress slot i)
    Clock::time_point idle_since;
    Clock::time_point expires;  // idle timeout
    std::string peer;
  };
  using ParkedList = boost::intrusive::list<Parked>;

  void wait();  // arms the wait on the epoll set
  void resume_ready();
  void close(ParkedList::iterator it);
  void free(Parked* p);
  void expire();

  asio::io_context& ioc_;
  std::chrono::milliseconds idle_timeout_;
  Resume resume_;
  Closed closed_;
  std::vector<tcp> families_;  // of each slot's listener
  // Parked nodes come from their own pool, so that they do not pin pages among the
  // freed memory of the connections' coroutines (which malloc can then give back).
  std::pmr::unsynchronized_pool_resource memory_;
  ParkedList parked_;
  int epoll_ = -1;
  std::unique_ptr<asio::posix::stream_descriptor> events_;  // epoll_, in the io_context
  asio::steady_timer timer_;                                // the front's idle timeout
  bool timer_armed_ = false;
  bool stopping_ = false;
};

}  // namespace meshd::proxy
