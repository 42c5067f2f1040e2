// A fast origin for benchmarks: answers every request with a body of the size in the
// path (/bytes/N, default 2), keep-alive, one thread. HTTP/1.1 (request bodies are
// not expected), or HTTP/2 when a connection begins with the preface (h2c prior
// knowledge, nghttp2's server session): a request with content-type
// application/grpc gets a gRPC answer (the body as one message, then grpc-status 0
// as trailers). usage: bench_upstream PORT (0: chosen, printed)
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <nghttp2/nghttp2.h>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <map>
#include <string>
#include <vector>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

namespace {

const std::string& response_for(std::size_t size) {
  static std::map<std::size_t, std::string> cache;
  auto it = cache.find(size);
  if (it == cache.end()) {
    std::string r = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(size) + "\r\n\r\n" + std::string(size, 'x');
    it = cache.emplace(size, std::move(r)).first;
  }
  return it->second;
}

std::size_t size_of(std::string_view path) {
  std::size_t size = 2;
  if (auto pos = path.find("/bytes/"); pos != std::string_view::npos) {
    std::from_chars(path.data() + pos + 7, path.data() + path.size(), size);
  }
  return size;
}

// HTTP/2: each stream is answered when its request ends.
class H2 {
 public:
  H2() {
    nghttp2_session_callbacks* cb = nullptr;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(cb, &H2::on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, &H2::on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, &H2::on_close);
    nghttp2_session_server_new(&session_, cb, this);
    nghttp2_session_callbacks_del(cb);
    const nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000},
                                               {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1 << 24}};
    nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, settings, 2);
    nghttp2_session_set_local_window_size(session_, NGHTTP2_FLAG_NONE, 0, 1 << 30);
  }
  ~H2() { nghttp2_session_del(session_); }
  H2(const H2&) = delete;
  H2& operator=(const H2&) = delete;

  bool receive(const char* p, std::size_t n) {
    return nghttp2_session_mem_recv(session_, reinterpret_cast<const std::uint8_t*>(p), n) >= 0;
  }
  std::string output() {
    std::string out;
    for (int i = 0; i < 1 << 16; ++i) {
      const std::uint8_t* d = nullptr;
      const auto n = nghttp2_session_mem_send(session_, &d);
      if (n <= 0) break;
      out.append(reinterpret_cast<const char*>(d), static_cast<std::size_t>(n));
    }
    return out;
  }

 private:
  struct Stream {
    std::string path;
    bool grpc = false;
    std::string body;  // the answer's
    std::size_t at = 0;
    std::string length;
  };
  static H2& self(void* u) { return *static_cast<H2*>(u); }
  static int on_header(nghttp2_session*, const nghttp2_frame* f, const std::uint8_t* n, std::size_t nl,
                       const std::uint8_t* v, std::size_t vl, std::uint8_t, void* u) {
    auto& st = self(u).streams_[f->hd.stream_id];
    const std::string_view name(reinterpret_cast<const char*>(n), nl), value(reinterpret_cast<const char*>(v), vl);
    if (name == ":path") st.path = value;
    if (name == "content-type" && value.rfind("application/grpc", 0) == 0) st.grpc = true;
    return 0;
  }
  static int on_frame(nghttp2_session* session, const nghttp2_frame* f, void* u) {
    if ((f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA) || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
      return 0;
    }
    auto& c = self(u);
    auto it = c.streams_.find(f->hd.stream_id);
    if (it == c.streams_.end()) return 0;
    auto& st = it->second;
    const std::size_t size = size_of(st.path);
    nghttp2_data_provider provider{};
    provider.read_callback = &H2::read;
    static const std::string ok = "200", grpc_type = "application/grpc";
    std::vector<nghttp2_nv> nva;
    auto add = [&](std::string_view name, std::string_view value) {
      nva.push_back({reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                     reinterpret_cast<std::uint8_t*>(const_cast<char*>(value.data())), name.size(), value.size(),
                     NGHTTP2_NV_FLAG_NONE});
    };
    add(":status", ok);
    if (st.grpc) {
      const auto n = static_cast<std::uint32_t>(size);
      st.body = std::string(1, '\0') + static_cast<char>(n >> 24) + static_cast<char>(n >> 16) +
                static_cast<char>(n >> 8) + static_cast<char>(n) + std::string(size, 'x');
      add("content-type", grpc_type);
    } else {
      st.body.assign(size, 'x');
      st.length = std::to_string(size);
      add("content-length", st.length);
    }
    nghttp2_submit_response(session, f->hd.stream_id, nva.data(), nva.size(), &provider);
    return 0;
  }
  static ssize_t read(nghttp2_session* session, std::int32_t id, std::uint8_t* buf, std::size_t len,
                      std::uint32_t* flags, nghttp2_data_source*, void* u) {
    auto& st = self(u).streams_[id];
    const std::size_t n = std::min(len, st.body.size() - st.at);
    std::memcpy(buf, st.body.data() + st.at, n);
    st.at += n;
    if (st.at == st.body.size()) {
      *flags |= NGHTTP2_DATA_FLAG_EOF;
      if (st.grpc) {
        static const std::string name = "grpc-status", zero = "0";
        nghttp2_nv trailer{reinterpret_cast<std::uint8_t*>(const_cast<char*>(name.data())),
                           reinterpret_cast<std::uint8_t*>(const_cast<char*>(zero.data())), name.size(), zero.size(),
                           NGHTTP2_NV_FLAG_NONE};
        *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        nghttp2_submit_trailer(session, id, &trailer, 1);
      }
    }
    return static_cast<ssize_t>(n);
  }
  static int on_close(nghttp2_session*, std::int32_t id, std::uint32_t, void* u) {
    self(u).streams_.erase(id);
    return 0;
  }
  nghttp2_session* session_ = nullptr;
  std::map<std::int32_t, Stream> streams_;
};

asio::awaitable<void> serve_h2(tcp::socket s, std::string first) {
  H2 h2;
  if (!h2.receive(first.data(), first.size())) co_return;
  char data[65536];
  for (;;) {
    const std::string out = h2.output();
    if (!out.empty()) {
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer(out), use_tuple);
      if (wec) co_return;
    }
    auto [ec, n] = co_await s.async_read_some(asio::buffer(data), use_tuple);
    if (ec || !h2.receive(data, n)) co_return;
  }
}

asio::awaitable<void> serve(tcp::socket s) {
  std::string buf;
  char data[16384];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(data), use_tuple);
    if (ec) co_return;
    buf.append(data, n);
    static constexpr std::string_view kPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    if (kPreface.starts_with(std::string_view(buf).substr(0, kPreface.size()))) {
      if (buf.size() < kPreface.size()) continue;
      co_await serve_h2(std::move(s), std::move(buf));
      co_return;
    }
    std::string out;
    for (std::size_t end; (end = buf.find("\r\n\r\n")) != std::string::npos;) {
      const auto sp = buf.find(' ');
      const auto path_end = buf.find(' ', sp + 1);
      out += response_for(size_of(std::string_view(buf).substr(sp + 1, path_end - sp - 1)));
      buf.erase(0, end + 4);
    }
    if (!out.empty()) {
      auto [wec, wn] = co_await asio::async_write(s, asio::buffer(out), use_tuple);
      if (wec) co_return;
    }
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor& a) {
  for (;;) {
    auto [ec, s] = co_await a.async_accept(use_tuple);
    if (ec) co_return;
    s.set_option(tcp::no_delay(true));
    asio::co_spawn(a.get_executor(), serve(std::move(s)), asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  const unsigned short port = argc > 1 ? static_cast<unsigned short>(std::stoi(argv[1])) : 0;
  asio::io_context ioc(1);
  tcp::acceptor acceptor(ioc, tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  acceptor.listen(4096);
  std::printf("%u\n", acceptor.local_endpoint().port());
  std::fflush(stdout);
  asio::signal_set signals(ioc, SIGTERM, SIGINT);
  signals.async_wait([&](auto, int) { ioc.stop(); });
  asio::co_spawn(ioc, accept_loop(acceptor), asio::detached);
  ioc.run();
}
