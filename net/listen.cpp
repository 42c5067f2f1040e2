#include "net/listen.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <utility>

namespace meshd::net {
namespace {

socklen_t to_sockaddr(const IpAddress& ip, std::uint16_t port, sockaddr_storage& out) {
  std::memset(&out, 0, sizeof out);
  if (ip.v6) {
    auto* a = reinterpret_cast<sockaddr_in6*>(&out);
    a->sin6_family = AF_INET6;
    a->sin6_port = htons(port);
    std::memcpy(&a->sin6_addr, ip.bytes, 16);
    return sizeof(sockaddr_in6);
  }
  auto* a = reinterpret_cast<sockaddr_in*>(&out);
  a->sin_family = AF_INET;
  a->sin_port = htons(port);
  std::memcpy(&a->sin_addr, ip.bytes, 4);
  return sizeof(sockaddr_in);
}

// A bound socket (not yet listening), or -1 with ec set.
int bind_one(const IpAddress& ip, std::uint16_t port, bool reuse_port, std::error_code& ec) {
  const int fd = ::socket(ip.v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  if (fd < 0) {
    ec.assign(errno, std::system_category());
    return -1;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);  // restart over TIME_WAIT
  if (reuse_port) ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
  if (ip.v6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  sockaddr_storage addr;
  const socklen_t len = to_sockaddr(ip, port, addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) != 0) {
    ec.assign(errno, std::system_category());
    ::close(fd);
    return -1;
  }
  return fd;
}

}  // namespace

ListenSockets::ListenSockets(ListenSockets&& other) noexcept
    : ip_(other.ip_), port_(other.port_), fds_(std::exchange(other.fds_, {})) {}

ListenSockets& ListenSockets::operator=(ListenSockets&& other) noexcept {
  if (this != &other) {
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
    ip_ = other.ip_;
    port_ = other.port_;
    fds_ = std::exchange(other.fds_, {});
  }
  return *this;
}

ListenSockets::~ListenSockets() {
  for (int fd : fds_) {
    if (fd >= 0) ::close(fd);
  }
}

int ListenSockets::release(std::size_t i) { return std::exchange(fds_.at(i), -1); }

ListenSockets ListenSockets::open(const IpAddress& ip, std::uint16_t port, unsigned count, int backlog,
                                  std::error_code& ec) {
  ListenSockets out;
  out.ip_ = ip;
  ec.clear();
  // The test bind: fails with EADDRINUSE when anyone (SO_REUSEPORT or not) holds it.
  const int probe = bind_one(ip, port, false, ec);
  if (probe < 0) return out;
  sockaddr_storage bound;
  socklen_t len = sizeof bound;
  ::getsockname(probe, reinterpret_cast<sockaddr*>(&bound), &len);
  out.port_ = ntohs(ip.v6 ? reinterpret_cast<sockaddr_in6*>(&bound)->sin6_port
                          : reinterpret_cast<sockaddr_in*>(&bound)->sin_port);
  ::close(probe);
  for (unsigned i = 0; i < (count == 0 ? 1 : count); ++i) {
    const int fd = bind_one(ip, out.port_, true, ec);
    if (fd < 0) {
      out = ListenSockets();
      return out;
    }
    out.fds_.push_back(fd);
    if (::listen(fd, backlog) != 0) {
      ec.assign(errno, std::system_category());
      out = ListenSockets();
      return out;
    }
  }
  return out;
}

}  // namespace meshd::net
