#pragma once
// DNS for discovery: c-ares, asking the servers of `dns_resolvers` (or resolv.conf),
// driven from an io_context on the main thread. Abstract so tests can fake it.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "net/address.hpp"

namespace boost::asio {
class io_context;
}

namespace meshd::net {

struct DnsAnswer {
  // failure: SERVFAIL, timeout, refused... (discovery keeps the last answer);
  // nxdomain: the name does not exist (discovery drops the endpoints).
  enum class Status { ok, nxdomain, failure } status = Status::failure;
  std::vector<IpAddress> addresses;
  std::string error;
};

class Resolver {
 public:
  virtual ~Resolver() = default;
  // Resolves each name (family: AF_INET, AF_INET6 or AF_UNSPEC) and calls `done` once
  // per name, on the resolver's io_context.
  virtual void resolve(const std::vector<std::string>& names, int family,
                       std::function<void(const std::string&, DnsAnswer)> done) = 0;
};

class CaresResolver : public Resolver {
 public:
  // `servers`: "IP[:PORT]" list; empty: the system's resolv.conf.
  CaresResolver(boost::asio::io_context& ioc, const std::vector<std::string>& servers,
                std::string& error);
  ~CaresResolver() override;
  void resolve(const std::vector<std::string>& names, int family,
               std::function<void(const std::string&, DnsAnswer)> done) override;

 private:
  struct Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace meshd::net
