#include "net/dns.hpp"

#include <ares.h>
#include <netinet/in.h>
#include <sys/select.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <mutex>

namespace meshd::net {

struct CaresResolver::Impl : std::enable_shared_from_this<CaresResolver::Impl> {
  explicit Impl(boost::asio::io_context& ioc) : timer(ioc) {}
  ~Impl() {
    if (channel != nullptr) ares_destroy(channel);
  }

  struct Query {
    std::shared_ptr<Impl> self;
    std::string name;
    std::function<void(const std::string&, DnsAnswer)> done;
  };

  static void on_answer(void* arg, int status, int /*timeouts*/, ares_addrinfo* result) {
    std::unique_ptr<Query> q(static_cast<Query*>(arg));
    DnsAnswer answer;
    if (status == ARES_SUCCESS && result != nullptr) {
      answer.status = DnsAnswer::Status::ok;
      for (auto* n = result->nodes; n != nullptr; n = n->ai_next) {
        IpAddress ip;
        if (n->ai_family == AF_INET) {
          std::memcpy(ip.bytes, &reinterpret_cast<sockaddr_in*>(n->ai_addr)->sin_addr, 4);
        } else if (n->ai_family == AF_INET6) {
          ip.v6 = true;
          std::memcpy(ip.bytes, &reinterpret_cast<sockaddr_in6*>(n->ai_addr)->sin6_addr, 16);
        } else {
          continue;
        }
        bool seen = false;
        for (const auto& a : answer.addresses) seen = seen || a == ip;
        if (!seen) answer.addresses.push_back(ip);
      }
    } else if (status == ARES_ENOTFOUND || status == ARES_ENODATA) {
      answer.status = DnsAnswer::Status::nxdomain;
      answer.error = ares_strerror(status);
    } else {
      answer.status = DnsAnswer::Status::failure;
      answer.error = ares_strerror(status);
    }
    if (result != nullptr) ares_freeaddrinfo(result);
    --q->self->pending;
    if (!q->self->shutting_down && status != ARES_EDESTRUCTION && status != ARES_ECANCELLED) {
      q->done(q->name, std::move(answer));
    }
  }

  // c-ares owns its sockets; a short timer drives it while queries are pending
  // (only the main thread resolves, a few names every few seconds).
  void poll() {
    fd_set readers, writers;
    FD_ZERO(&readers);
    FD_ZERO(&writers);
    const int nfds = ares_fds(channel, &readers, &writers);
    if (nfds > 0) {
      timeval tv{0, 0};
      if (::select(nfds, &readers, &writers, nullptr, &tv) < 0) {
        FD_ZERO(&readers);
        FD_ZERO(&writers);
      }
    }
    ares_process(channel, &readers, &writers);
    if (pending > 0) {
      timer.expires_after(std::chrono::milliseconds(2));
      timer.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
        if (!ec) self->poll();
      });
    } else {
      polling = false;
    }
  }

  ares_channel channel = nullptr;
  boost::asio::steady_timer timer;
  int pending = 0;
  bool polling = false;
  bool shutting_down = false;
};

CaresResolver::CaresResolver(boost::asio::io_context& ioc, const std::vector<std::string>& servers,
                             std::string& error)
    : impl_(std::make_shared<Impl>(ioc)) {
  static std::once_flag init;
  std::call_once(init, [] { ares_library_init(ARES_LIB_INIT_ALL); });
  ares_options options{};
  options.timeout = 1000;  // ms per try (ARES_OPT_TIMEOUTMS)
  options.tries = 2;
  int rc = ares_init_options(&impl_->channel, &options, ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES);
  if (rc != ARES_SUCCESS) {
    error = std::string("c-ares: ") + ares_strerror(rc);
    return;
  }
  if (!servers.empty()) {
    std::string csv;
    for (const auto& s : servers) csv += (csv.empty() ? "" : ",") + s;
    rc = ares_set_servers_ports_csv(impl_->channel, csv.c_str());
    if (rc != ARES_SUCCESS) error = "dns_resolvers: " + std::string(ares_strerror(rc));
  }
}

CaresResolver::~CaresResolver() {
  // Queries still pending hold the Impl: cancel them (their callbacks run now, without
  // calling back into discovery) so that nothing outlives the resolver.
  impl_->shutting_down = true;
  impl_->timer.cancel();
  if (impl_->channel != nullptr) ares_cancel(impl_->channel);
}

void CaresResolver::resolve(const std::vector<std::string>& names, int family,
                            std::function<void(const std::string&, DnsAnswer)> done) {
  for (const auto& name : names) {
    ares_addrinfo_hints hints{};
    hints.ai_family = family;
    hints.ai_socktype = SOCK_STREAM;
    ++impl_->pending;
    ares_getaddrinfo(impl_->channel, name.c_str(), nullptr, &hints, &Impl::on_answer,
                     new Impl::Query{impl_, name, done});
  }
  if (!impl_->polling && impl_->pending > 0) {
    impl_->polling = true;
    impl_->poll();
  }
}

}  // namespace meshd::net
