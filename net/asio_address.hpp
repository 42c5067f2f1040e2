#pragma once
// Conversions between net::IpAddress and Asio's address types (for the .cpp files
// that already use Asio).
#include <boost/asio/ip/address.hpp>
#include <cstring>

#include "net/address.hpp"

namespace meshd::net {

inline boost::asio::ip::address to_asio(const IpAddress& ip) {
  if (ip.v6) {
    boost::asio::ip::address_v6::bytes_type b;
    std::memcpy(b.data(), ip.bytes, 16);
    return boost::asio::ip::address_v6(b);
  }
  boost::asio::ip::address_v4::bytes_type b;
  std::memcpy(b.data(), ip.bytes, 4);
  return boost::asio::ip::address_v4(b);
}

inline IpAddress from_asio(const boost::asio::ip::address& a) {
  IpAddress ip;
  if (a.is_v6()) {
    ip.v6 = true;
    const auto b = a.to_v6().to_bytes();
    std::memcpy(ip.bytes, b.data(), 16);
  } else {
    const auto b = a.to_v4().to_bytes();
    std::memcpy(ip.bytes, b.data(), 4);
  }
  return ip;
}

}  // namespace meshd::net
