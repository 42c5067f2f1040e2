#pragma once
// IP addresses and host:port text, without sockets (no Asio in this header).
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace meshd::net {

struct IpAddress {
  bool v6 = false;
  unsigned char bytes[16] = {};
  std::string str() const;  // canonical text (IPv6 without brackets)
  bool operator==(const IpAddress& o) const;
};

// An IPv4 or IPv6 literal (IPv6 with or without brackets), or nullopt.
std::optional<IpAddress> parse_ip(std::string_view text);

struct HostPort {
  std::string host;  // without brackets for IPv6
  std::optional<std::uint16_t> port;
};
// "name", "name:port", "1.2.3.4:53", "[::1]:53", "::1". nullopt when malformed
// (empty host, a port that is not 1..65535).
std::optional<HostPort> split_host_port(std::string_view text, bool allow_port_zero = false);

// "IP:PORT" (IPv6 as "[IP]:PORT"), the form metrics and /clusters use.
std::string endpoint_text(const IpAddress& ip, std::uint16_t port);

}  // namespace meshd::net
