// The load generator's HTTP/2 side (meshd-bench --h2 N): h2c with prior knowledge,
// each connection keeping N streams in flight (closed loop: a stream that ends is
// replaced at once), nghttp2's client session on each. With --grpc each request is a
// gRPC unary call (POST, content-type application/grpc, te: trailers, the body as
// one message) and a response counts as 2xx only with grpc-status 0.
#include <nghttp2/nghttp2.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <thread>

#include "bench/load/generator.hpp"

namespace meshd::bench {

namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct Shared {
  const LoadConfig& cfg;
  Clock::time_point start;
  Clock::time_point end;
  std::atomic<std::uint64_t> issued{0};
  std::atomic<std::uint64_t> done{0};
  std::atomic<std::uint64_t> failed{0};
};

struct ThreadResult {
  Histogram latency;
  std::map<std::string, std::uint64_t> status_classes, errors;
  std::vector<std::uint64_t> per_second;
  std::uint64_t requests = 0;
};

// One connection and its streams.
class H2Connection {
 public:
  H2Connection(Shared& s, ThreadResult& out, unsigned index) : s_(s), out_(out), target_(index) {
    const auto& cfg = s_.cfg;
    body_ = cfg.body;
    if (cfg.grpc) {
      // One uncompressed message: a zero byte, the length (big-endian), the bytes.
      const auto n = static_cast<std::uint32_t>(cfg.body.size());
      body_ = std::string(1, '\0') + static_cast<char>(n >> 24) + static_cast<char>(n >> 16) +
              static_cast<char>(n >> 8) + static_cast<char>(n) + cfg.body;
    }
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, &H2Connection::on_header);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2Connection::on_close);
    nghttp2_session_client_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24},
                                               {NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 1 << 30);
  }
  ~H2Connection() { nghttp2_session_del(session_); }
  H2Connection(const H2Connection&) = delete;
  H2Connection& operator=(const H2Connection&) = delete;

  asio::awaitable<void> run(tcp::endpoint ep) {
    auto ex = co_await asio::this_coro::executor;
    tcp::socket socket(ex);
    auto [cec] = co_await socket.async_connect(ep, use_tuple);
    if (cec) {
      ++out_.errors["connect"];
      s_.failed.fetch_add(1, std::memory_order_relaxed);
      co_return;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    for (unsigned i = 0; i < s_.cfg.h2_streams; ++i) submit();
    char buf[65536];
    const auto give_up = s_.end + std::chrono::milliseconds(static_cast<std::int64_t>(s_.cfg.timeout_s * 1000));
    for (std::uint64_t guard = 0; guard < (1ULL << 40); ++guard) {
      std::string out;
      for (int i = 0; i < 1 << 16; ++i) {
        const std::uint8_t* d = nullptr;
        const auto n = nghttp2_session_mem_send(session_, &d);
        if (n <= 0) break;
        out.append(reinterpret_cast<const char*>(d), static_cast<std::size_t>(n));
      }
      if (!out.empty()) {
        auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(out), use_tuple);
        if (wec) break;
      }
      if (streams_.empty() || Clock::now() > give_up) break;
      auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf), use_tuple);
      if (rec) break;
      if (nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(buf), n) < 0) break;
    }
    for (std::size_t i = 0; i < streams_.size(); ++i) {
      ++out_.errors["reset"];
      s_.failed.fetch_add(1, std::memory_order_relaxed);
    }
    socket.close(ignored);
  }

 private:
  struct Stream {
    Clock::time_point sent;
    int status = 0;
    bool grpc_ok = false;
    std::size_t body_sent = 0;
  };

  void submit() {
    const auto& cfg = s_.cfg;
    if (Clock::now() >= s_.end) return;
    if (cfg.max_requests > 0 && s_.issued.fetch_add(1) >= cfg.max_requests) return;
    const auto& t = cfg.targets[target_ % cfg.targets.size()];
    ++target_;
    std::vector<std::pair<std::string, std::string>> h = {
        {":method", cfg.grpc ? "POST" : t.method}, {":scheme", "http"}, {":authority", t.host}, {":path", t.path}};
    if (cfg.grpc) {
      h.emplace_back("content-type", "application/grpc");
      h.emplace_back("te", "trailers");
    }
    for (const auto& [n, v] : cfg.headers) h.emplace_back(n, v);
    if (!body_.empty()) h.emplace_back("content-length", std::to_string(body_.size()));
    std::vector<nghttp2_nv> nva;
    for (auto& [n, v] : h) {
      nva.push_back({reinterpret_cast<std::uint8_t*>(n.data()), reinterpret_cast<std::uint8_t*>(v.data()), n.size(),
                     v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    nghttp2_data_provider provider{};
    provider.read_callback = [](nghttp2_session*, std::int32_t id, std::uint8_t* buf, std::size_t len,
                                std::uint32_t* flags, nghttp2_data_source*, void* u) -> ssize_t {
      auto& c = *static_cast<H2Connection*>(u);
      auto it = c.streams_.find(id);
      if (it == c.streams_.end()) return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
      auto& at = it->second.body_sent;
      const std::size_t n = std::min(len, c.body_.size() - at);
      std::memcpy(buf, c.body_.data() + at, n);
      at += n;
      if (at == c.body_.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
      return static_cast<ssize_t>(n);
    };
    const auto id = nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(),
                                           body_.empty() ? nullptr : &provider, nullptr);
    if (id < 0) return;
    streams_[id] = Stream{Clock::now(), 0, false, 0};
  }

  static int on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* n, std::size_t nl,
                       const std::uint8_t* v, std::size_t vl, std::uint8_t, void* u) {
    auto& c = *static_cast<H2Connection*>(u);
    auto it = c.streams_.find(f->hd.stream_id);
    if (it == c.streams_.end()) return 0;
    const std::string_view name(reinterpret_cast<const char*>(n), nl), value(reinterpret_cast<const char*>(v), vl);
    if (name == ":status") it->second.status = std::atoi(std::string(value).c_str());
    if (name == "grpc-status") it->second.grpc_ok = value == "0";
    return 0;
  }

  static int on_close(nghttp2_session*, std::int32_t id, std::uint32_t code, void* u) {
    auto& c = *static_cast<H2Connection*>(u);
    auto it = c.streams_.find(id);
    if (it == c.streams_.end()) return 0;
    const Stream st = it->second;
    c.streams_.erase(it);
    const auto now = Clock::now();
    if (code != 0 || st.status == 0) {
      ++c.out_.errors["reset"];
      c.s_.failed.fetch_add(1, std::memory_order_relaxed);
    } else {
      ++c.out_.requests;
      c.s_.done.fetch_add(1, std::memory_order_relaxed);
      c.out_.latency.record(
          static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(now - st.sent).count()));
      const bool ok = !c.s_.cfg.grpc || st.grpc_ok;
      c.out_.status_classes[ok ? std::to_string(st.status / 100) + "xx" : "grpc-error"]++;
      const auto second =
          static_cast<std::size_t>(std::chrono::duration_cast<std::chrono::seconds>(now - c.s_.start).count());
      if (c.out_.per_second.size() <= second) c.out_.per_second.resize(second + 1);
      ++c.out_.per_second[second];
    }
    c.submit();  // closed loop: the next one at once
    return 0;
  }

  Shared& s_;
  ThreadResult& out_;
  unsigned target_;
  std::string body_;
  nghttp2_session* session_ = nullptr;
  std::map<std::int32_t, Stream> streams_;
};

}  // namespace

Result run_load_h2(const LoadConfig& cfg) {
  Shared s{cfg, Clock::now(), Clock::now(), {}, {}, {}};
  const tcp::endpoint ep(asio::ip::make_address(cfg.connect_ip), cfg.connect_port);
  const unsigned threads = std::max(1u, std::min(cfg.threads, cfg.connections));
  std::vector<ThreadResult> results(threads);
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<std::unique_ptr<H2Connection>> conns;
  s.start = Clock::now();
  s.end = s.start + std::chrono::milliseconds(static_cast<std::int64_t>(cfg.duration_s * 1000));
  for (unsigned t = 0; t < threads; ++t) {
    contexts.push_back(std::make_unique<asio::io_context>(1));
    for (unsigned c = t; c < cfg.connections; c += threads) {
      conns.push_back(std::make_unique<H2Connection>(s, results[t], c));
      asio::co_spawn(*contexts[t], conns.back()->run(ep), asio::detached);
    }
  }
  std::vector<std::thread> pool;
  for (unsigned t = 0; t < threads; ++t) pool.emplace_back([&, t] { contexts[t]->run(); });
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
      for (auto& c : contexts) c->stop();
    }
  }
  for (auto& th : pool) th.join();
  if (cfg.progress) std::fprintf(stderr, "\n");
  Result r;
  const double seconds = std::chrono::duration<double>(std::min(Clock::now(), s.end) - s.start).count();
  r.seconds = cfg.max_requests > 0 ? std::chrono::duration<double>(Clock::now() - s.start).count() : seconds;
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
