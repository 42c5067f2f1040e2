#pragma once
// Listening sockets for N workers on one address (DESIGN "Threading"): a plain test
// bind first, without SO_REUSEPORT, so that a port already in use (another meshd
// included) fails instead of being silently shared; then one SO_REUSEPORT socket per
// worker, all on the same port (a port given as 0 is chosen once, by the test bind).
// Plain POSIX descriptors: each worker's Asio acceptor adopts its own.
#include <cstdint>
#include <string>
#include <system_error>
#include <vector>

#include "net/address.hpp"

namespace meshd::net {

class ListenSockets {
 public:
  ListenSockets() = default;
  ListenSockets(const ListenSockets&) = delete;
  ListenSockets& operator=(const ListenSockets&) = delete;
  ListenSockets(ListenSockets&& other) noexcept;
  ListenSockets& operator=(ListenSockets&& other) noexcept;
  ~ListenSockets();

  // Binds `count` sockets to ip:port (port 0: one port chosen for all) and listens.
  static ListenSockets open(const IpAddress& ip, std::uint16_t port, unsigned count, int backlog,
                            std::error_code& ec);

  std::uint16_t port() const { return port_; }
  const IpAddress& ip() const { return ip_; }
  std::string address() const { return endpoint_text(ip_, port_); }
  const std::vector<int>& fds() const { return fds_; }
  // Hands descriptor i over to its owner (e.g. an acceptor); it is not closed here.
  int release(std::size_t i);

 private:
  IpAddress ip_;
  std::uint16_t port_ = 0;
  std::vector<int> fds_;
};

}  // namespace meshd::net
