// A fast HTTP/1.1 origin for benchmarks: answers every request (bodies are not
// expected) with a body of the size in the path (/bytes/N, default 2), keep-alive,
// one thread. usage: bench_upstream PORT (0: chosen, printed)
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>
#include <cstdio>
#include <map>
#include <string>

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

asio::awaitable<void> serve(tcp::socket s) {
  std::string buf;
  char data[16384];
  for (;;) {
    auto [ec, n] = co_await s.async_read_some(asio::buffer(data), use_tuple);
    if (ec) co_return;
    buf.append(data, n);
    std::string out;
    for (std::size_t end; (end = buf.find("\r\n\r\n")) != std::string::npos;) {
      std::size_t size = 2;
      const auto sp = buf.find(' ');
      const auto path_end = buf.find(' ', sp + 1);
      const std::string path = buf.substr(sp + 1, path_end - sp - 1);
      if (auto pos = path.find("/bytes/"); pos != std::string::npos) {
        std::from_chars(path.data() + pos + 7, path.data() + path.size(), size);
      }
      out += response_for(size);
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
