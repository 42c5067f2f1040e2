#include "net/dns.hpp"

#include <ares.h>
#include <netinet/in.h>
#include <poll.h>

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
  // (only the main thread resolves, a few names every few seconds). poll(), not
  // select(): with thousands of connections open, c-ares' descriptors are above
  // FD_SETSIZE, which select() cannot take.
  void poll() {
    ares_socket_t socks[ARES_GETSOCK_MAXNUM];
    const int mask = ares_getsock(channel, socks, ARES_GETSOCK_MAXNUM);
    pollfd fds[ARES_GETSOCK_MAXNUM];
    int n = 0;
    for (int i = 0; i < ARES_GETSOCK_MAXNUM; ++i) {
      const bool r = ARES_GETSOCK_READABLE(mask, i), w = ARES_GETSOCK_WRITABLE(mask, i);
      if (!r && !w) continue;
      fds[n].fd = socks[i];
      fds[n].events = static_cast<short>((r ? POLLIN : 0) | (w ? POLLOUT : 0));
      fds[n].revents = 0;
      ++n;
    }
    if (n > 0 && ::poll(fds, static_cast<nfds_t>(n), 0) > 0) {
      for (int i = 0; i < n; ++i) {
        const bool r = (fds[i].revents & (POLLIN | POLLERR | POLLHUP)) != 0;
        const bool w = (fds[i].revents & POLLOUT) != 0;
        if (r || w) ares_process_fd(channel, r ? fds[i].fd : ARES_SOCKET_BAD, w ? fds[i].fd : ARES_SOCKET_BAD);
      }
    }
    ares_process_fd(channel, ARES_SOCKET_BAD, ARES_SOCKET_BAD);  // timeouts
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
