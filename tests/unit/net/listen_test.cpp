#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "net/listen.hpp"

using namespace meshd::net;

namespace {

bool can_connect(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

}  // namespace

TEST_CASE("port 0 is chosen once and shared by every worker's socket") {
  std::error_code ec;
  auto ls = ListenSockets::open(*parse_ip("127.0.0.1"), 0, 3, 128, ec);
  REQUIRE_FALSE(ec);
  REQUIRE(ls.fds().size() == 3);
  REQUIRE(ls.port() != 0);
  CHECK(ls.address() == "127.0.0.1:" + std::to_string(ls.port()));
  for (int fd : ls.fds()) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    CHECK(ntohs(a.sin_port) == ls.port());
  }
  CHECK(can_connect(ls.port()));
}

TEST_CASE("a port in use fails, even when its holder uses SO_REUSEPORT (another meshd)") {
  std::error_code ec;
  auto first = ListenSockets::open(*parse_ip("127.0.0.1"), 0, 2, 128, ec);
  REQUIRE_FALSE(ec);
  auto second = ListenSockets::open(*parse_ip("127.0.0.1"), first.port(), 2, 128, ec);
  CHECK(ec == std::errc::address_in_use);
  CHECK(second.fds().empty());
}

TEST_CASE("descriptors close with their owner unless released") {
  std::error_code ec;
  std::uint16_t port = 0;
  int released = -1;
  {
    auto ls = ListenSockets::open(*parse_ip("127.0.0.1"), 0, 2, 16, ec);
    REQUIRE_FALSE(ec);
    port = ls.port();
    released = ls.release(1);
  }
  // The released socket still listens; the other was closed.
  CHECK(can_connect(port));
  ::close(released);
  CHECK_FALSE(can_connect(port));
}
