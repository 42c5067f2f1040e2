#include "mesh/health_checker.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <random>

#include "mesh/resilience.hpp"
#include "net/asio_address.hpp"
#include "net/log.hpp"

namespace meshd::mesh {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;

struct HealthChecker::Target {
  Target(asio::io_context& ioc, std::shared_ptr<Endpoint> e, const HealthCheck& c, std::string h, std::string n)
      : endpoint(std::move(e)), config(c), host(std::move(h)), node(std::move(n)),
        state(c.healthy_threshold, c.unhealthy_threshold), timer(ioc), deadline(ioc), socket(ioc) {}
  std::shared_ptr<Endpoint> endpoint;
  HealthCheck config;
  std::string host;  // the Host of HTTP checks: the node's discovery name, else the address
  std::string node;  // for the log
  HealthState state;
  asio::steady_timer timer;
  asio::steady_timer deadline;
  tcp::socket socket;
  std::string buffer;
  bool stopped = false;
  bool done_once = false;
};

HealthChecker::HealthChecker(asio::io_context& ioc) : ioc_(ioc) {}

HealthChecker::~HealthChecker() {
  for (auto& [_, t] : targets_) {
    t->stopped = true;
    t->timer.cancel();
    t->deadline.cancel();
    error_code ec;
    t->socket.close(ec);
  }
}

void HealthChecker::update(const Snapshot& snap, const EndpointTable& table) {
  std::map<const Endpoint*, std::shared_ptr<Target>> next;
  for (std::size_t i = 0; i < table.size() && i < snap.clusters().size(); ++i) {
    const Listener* l = cluster_listener(snap.clusters()[i]);
    if (l == nullptr || !l->health_check) continue;
    for (const auto& e : table[i]->endpoints) {
      if (next.count(e.get())) continue;
      if (auto it = targets_.find(e.get()); it != targets_.end()) {
        next[e.get()] = it->second;
        continue;
      }
      std::string host = discovery_name(snap.clusters()[i]);
      auto t = std::make_shared<Target>(ioc_, e, *l->health_check, host.empty() ? e->text : host, table[i]->node);
      next[e.get()] = t;
      schedule(t, std::chrono::milliseconds(0));  // a new endpoint is checked at once
    }
  }
  for (auto& [ep, t] : targets_) {
    if (!next.count(ep)) {
      t->stopped = true;
      t->timer.cancel();
      t->deadline.cancel();
      error_code ec;
      t->socket.close(ec);
    }
  }
  targets_ = std::move(next);
}

bool HealthChecker::first_round_done() const {
  for (const auto& [_, t] : targets_) {
    if (!t->done_once) return false;
  }
  return true;
}

void HealthChecker::schedule(const std::shared_ptr<Target>& t, std::chrono::milliseconds delay) {
  if (t->stopped) return;
  t->timer.expires_after(delay);
  t->timer.async_wait([this, t](const error_code& ec) {
    if (!ec && !t->stopped) probe(t);
  });
}

void HealthChecker::probe(const std::shared_ptr<Target>& t) {
  auto finish = [this, t](bool pass, const std::string& why) {
    if (t->stopped) return;
    t->deadline.cancel();
    error_code ignored;
    t->socket.close(ignored);
    const bool was = t->endpoint->healthy.load(std::memory_order_relaxed);
    const bool now = t->state.record(pass);
    t->endpoint->healthy.store(now, std::memory_order_relaxed);
    // Transitions are worth a line; a new endpoint's first pass only at debug (a mesh
    // with many endpoints would otherwise log each one at start).
    if (t->done_once ? now != was : !now) {
      log::write(log::Level::info, "health check: node " + t->node + " endpoint " + t->endpoint->text + " is " +
                                       (now ? "healthy" : "unhealthy") + (pass ? "" : " (" + why + ")"));
    } else {
      log::write(log::Level::debug, "health check: node " + t->node + " endpoint " + t->endpoint->text + ": " +
                                        (pass ? "passed" : "failed (" + why + ")"));
    }
    t->done_once = true;
    static thread_local std::mt19937 rng(std::random_device{}());
    const auto interval = t->config.interval_millis;
    const auto jitter = interval / 10 > 0 ? static_cast<std::int64_t>(rng() % static_cast<std::uint64_t>(interval / 10)) : 0;
    schedule(t, std::chrono::milliseconds(interval + jitter));
  };
  auto finished = std::make_shared<bool>(false);
  auto once = [finish, finished](bool pass, const std::string& why = {}) {
    if (*finished) return;
    *finished = true;
    finish(pass, why);
  };
  error_code ec;
  t->socket = tcp::socket(ioc_);
  t->deadline.expires_after(std::chrono::milliseconds(t->config.timeout_millis));
  t->deadline.async_wait([t, once](const error_code& e) {
    if (e) return;  // cancelled: the probe finished first
    once(false, "no answer within " + std::to_string(t->config.timeout_millis) + " ms");
  });
  t->socket.async_connect(tcp::endpoint(net::to_asio(t->endpoint->ip), t->endpoint->port), [t, once](const error_code& e) {
    if (e) return once(false, "connect: " + e.message());
    if (t->config.protocol == Protocol::tcp) return once(true);
    // HTTP: GET path; a 200 passes.
    auto request = std::make_shared<std::string>("GET " + t->config.path.value_or("/") + " HTTP/1.1\r\nHost: " +
                                                 t->host + "\r\nUser-Agent: meshd-health-check\r\nConnection: close\r\n\r\n");
    asio::async_write(t->socket, asio::buffer(*request), [t, once, request](const error_code& we, std::size_t) {
      if (we) return once(false, "write: " + we.message());
      t->buffer.assign(64, '\0');
      asio::async_read(t->socket, asio::buffer(t->buffer), asio::transfer_at_least(12),
                       [t, once](const error_code& re, std::size_t n) {
                         if (re && n < 12) return once(false, "no HTTP response");
                         const std::string_view line(t->buffer.data(), n);
                         if (line.substr(0, 7) != "HTTP/1.") return once(false, "not an HTTP response");
                         if (line.substr(8, 4) != " 200") return once(false, "HTTP" + std::string(line.substr(8, 4)));
                         once(true);
                       });
    });
  });
}

}  // namespace meshd::mesh
