#include "bench/load/generator.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstdio>
#include <mutex>
#include <optional>
#include <thread>

#include "net/byte_buffer.hpp"
#include "proxy/http1_codec.hpp"

namespace meshd::bench {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

std::chrono::nanoseconds scheduled_offset(double rate, unsigned connections, unsigned connection, std::uint64_t k) {
  // Each connection sends at rate/connections, the connections staggered evenly.
  const double interval_ns = 1e9 * static_cast<double>(connections) / rate;
  const double stagger = interval_ns * static_cast<double>(connection) / static_cast<double>(connections);
  return std::chrono::nanoseconds(static_cast<std::int64_t>(stagger + interval_ns * static_cast<double>(k)));
}

std::string build_request(const LoadConfig& cfg, const Target& t) {
  std::string r = t.method + " " + t.path + " HTTP/1.1\r\nHost: " + t.host + "\r\n";
  for (const auto& [n, v] : cfg.headers) r += n + ": " + v + "\r\n";
  if (!cfg.body.empty()) r += "Content-Length: " + std::to_string(cfg.body.size()) + "\r\n";
  if (!cfg.keep_alive) r += "Connection: close\r\n";
  r += "\r\n" + cfg.body;
  return r;
}

namespace {

struct Shared {
  const LoadConfig& cfg;
  Clock::time_point start;
  Clock::time_point end;
  std::atomic<std::uint64_t> issued{0};
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
  std::atomic<bool> stop{false};
};

struct ThreadResult {
  Histogram latency;
  std::map<std::string, std::uint64_t> status_classes, errors;
  std::vector<std::uint64_t> per_second;
  std::uint64_t requests = 0;
};

asio::awaitable<void> connection(Shared& s, ThreadResult& out, unsigned index, tcp::endpoint ep,
                                 std::vector<std::string> requests, std::vector<bool> is_head) {
  auto ex = co_await asio::this_coro::executor;
  tcp::socket socket(ex);
  asio::steady_timer timer(ex), watchdog(ex);
  net::ByteBuffer buffer;
  std::uint64_t k = 0;
  std::size_t target = index % requests.size();
  bool connected = false;
  std::optional<proxy::Http1Parser> parser;
  const bool open_loop = s.cfg.rate > 0;
  while (!s.stop.load(std::memory_order_relaxed)) {
    if (s.cfg.max_requests > 0 && s.issued.fetch_add(1) >= s.cfg.max_requests) break;
    Clock::time_point scheduled = Clock::now();
    if (open_loop) {
      scheduled = s.start + scheduled_offset(s.cfg.rate, s.cfg.connections, index, k++);
      if (scheduled >= s.end) break;
      if (scheduled > Clock::now()) {
        timer.expires_at(scheduled);
        co_await timer.async_wait(use_tuple);
      }
    } else if (Clock::now() >= s.end) {
      break;
    }
    bool timed_out = false;
    watchdog.expires_after(std::chrono::milliseconds(static_cast<std::int64_t>(s.cfg.timeout_s * 1000)));
    watchdog.async_wait([&](const boost::system::error_code& ec) {
      if (ec) return;
      timed_out = true;
      boost::system::error_code ignored;
      socket.cancel(ignored);
    });
    const char* error = nullptr;
    if (!connected) {
      boost::system::error_code ignored;
      socket.close(ignored);
      socket = tcp::socket(ex);
      auto [ec] = co_await socket.async_connect(ep, use_tuple);
      if (ec) error = timed_out ? "timeout" : "connect";
      else {
        connected = true;
        socket.set_option(tcp::no_delay(true), ignored);
        parser.emplace(proxy::Http1Parser::Kind::response, proxy::HeadLimits{1 << 20, 1000});
        buffer.clear();
      }
    }
    int status = 0;
    if (error == nullptr) {
      const auto& req = requests[target];
      parser->expect_no_body(is_head[target]);
      target = (target + 1) % requests.size();
      auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(req), use_tuple);
      if (wec) error = timed_out ? "timeout" : "reset";
      bool complete = false;
      for (int guard = 0; error == nullptr && !complete && guard < 1000000; ++guard) {
        auto step = parser->parse(buffer.view());
        switch (step.event) {
          case proxy::Http1Parser::Event::head:
            status = parser->head().status;
            buffer.consume(step.consumed);
            continue;
          case proxy::Http1Parser::Event::body:
            buffer.consume(step.consumed);
            continue;
          case proxy::Http1Parser::Event::message_complete:
            buffer.consume(step.consumed);
            complete = true;
            continue;
          case proxy::Http1Parser::Event::error:
            error = "protocol";
            continue;
          default:
            buffer.consume(step.consumed);
            break;
        }
        char* space = buffer.prepare(65536);
        auto [rec, n] = co_await socket.async_read_some(asio::buffer(space, 65536), use_tuple);
        buffer.commit(n);
        if (rec) {
          if (rec == asio::error::eof && parser->body_until_close()) {
            complete = parser->finish().event == proxy::Http1Parser::Event::message_complete;
            connected = false;
            if (!complete) error = "reset";
          } else {
            error = timed_out ? "timeout" : "reset";
          }
        }
      }
      if (complete && (!parser->keep_alive() || !s.cfg.keep_alive)) connected = false;
    }
    watchdog.cancel();
    const auto now = Clock::now();
    if (error != nullptr) {
      ++out.errors[error];
      connected = false;
      s.failed.fetch_add(1, std::memory_order_relaxed);
      if (std::string_view(error) == "connect") {
        timer.expires_after(std::chrono::milliseconds(10));  // do not spin on a refused port
        co_await timer.async_wait(use_tuple);
      }
      continue;
    }
    ++out.requests;
    s.done.fetch_add(1, std::memory_order_relaxed);
    out.latency.record(static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - scheduled).count()));
    out.status_classes[std::to_string(status / 100) + "xx"]++;
    const auto second = static_cast<std::size_t>(std::chrono::duration_cast<std::chrono::seconds>(now - s.start).count());
    if (out.per_second.size() <= second) out.per_second.resize(second + 1);
    ++out.per_second[second];
  }
  boost::system::error_code ignored;
  socket.close(ignored);
}

}  // namespace

Result run_load(const LoadConfig& cfg) {
  if (cfg.h2_streams > 0) return run_load_h2(cfg);
  Shared s{cfg, Clock::now(), Clock::now(), {}, {}, {}, {}};
  const tcp::endpoint ep(asio::ip::make_address(cfg.connect_ip), cfg.connect_port);
  std::vector<std::string> requests;
  std::vector<bool> is_head;
  for (const auto& t : cfg.targets) {
    requests.push_back(build_request(cfg, t));
    is_head.push_back(t.method == "HEAD");
  }
  const unsigned threads = std::max(1u, std::min(cfg.threads, cfg.connections));
  std::vector<ThreadResult> results(threads);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  s.start = Clock::now();
  s.end = s.start + std::chrono::milliseconds(static_cast<std::int64_t>(cfg.duration_s * 1000));
  for (unsigned t = 0; t < threads; ++t) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    for (unsigned c = t; c < cfg.connections; c += threads) {
      asio::co_spawn(*contexts[t], connection(s, results[t], c, ep, requests, is_head), asio::detached);
    }
  }
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back([&, t] { contexts[t]->run(); });
  // Progress on stderr once a second; the runs end by themselves (duration or count).
  std::uint64_t last = 0;
  for (int tick = 1; tick < 1000000; ++tick) {
    bool finished = true;
    for (auto& c : contexts) finished = finished && c->stopped();
    if (finished) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    if (tick % 10 == 0 && cfg.progress) {
      const auto done = s.done.load();
      std::fprintf(stderr, "\r[%3ds] %10llu requests %9llu/s  errors %llu   ", tick / 10,
                   static_cast<unsigned long long>(done), static_cast<unsigned long long>(done - last),
                   static_cast<unsigned long long>(s.failed.load()));
      last = done;
    }
    if (Clock::now() > s.end + std::chrono::milliseconds(static_cast<std::int64_t>(cfg.timeout_s * 1000) + 1000)) {
      s.stop = true;
      for (auto& c : contexts) c->stop();
    }
  }
  for (auto& th : pool) th.join();
  if (cfg.progress) std::fprintf(stderr, "\n");
  const double seconds = std::chrono::duration<double>(std::min(Clock::now(), s.end) - s.start).count();
  Result r;
  r.seconds = cfg.max_requests > 0 ? std::chrono::duration<double>(Clock::now() - s.start).count() : seconds;
  r.target_rate = cfg.rate;
  for (auto& t : results) {
    r.requests += t.requests;
    r.latency.merge(t.latency);
    for (const auto& [k, v] : t.status_classes) r.status_classes[k] += v;
    for (const auto& [k, v] : t.errors) r.errors[k] += v;
    if (r.per_second.size() < t.per_second.size()) r.per_second.resize(t.per_second.size());
    for (std::size_t i = 0; i < t.per_second.size(); ++i) r.per_second[i] += t.per_second[i];
  }
  return r;
}

}  // namespace meshd::bench
