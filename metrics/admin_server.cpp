#include "metrics/admin_server.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <thread>
#include <vector>

namespace meshd::metrics {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using tcp = asio::ip::tcp;
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

struct AdminServer::Impl {
  asio::io_context ioc{1};
  std::vector<std::unique_ptr<tcp::acceptor>> acceptors;
  std::thread thread;

  static asio::awaitable<void> session(tcp::socket socket, AdminHandler handler) {
    boost::beast::flat_buffer buffer;
    for (int i = 0; i < 1000; ++i) {  // bounded keep-alive per connection
      http::request<http::string_body> req;
      http::request_parser<http::string_body> parser;
      parser.body_limit(64 * 1024);
      parser.header_limit(16 * 1024);
      auto [ec, n] = co_await http::async_read(socket, buffer, parser, use_tuple);
      if (ec) break;
      req = parser.release();
      AdminResponse r = handler(std::string(req.method_string()), std::string(req.target()));
      http::response<http::string_body> res{static_cast<http::status>(r.status), req.version()};
      res.set(http::field::content_type, r.content_type);
      res.set(http::field::server, "meshd");
      res.keep_alive(req.keep_alive());
      res.body() = std::move(r.body);
      res.prepare_payload();
      auto [wec, wn] = co_await http::async_write(socket, res, use_tuple);
      if (wec || !res.keep_alive()) break;
    }
    boost::system::error_code ignored;
    socket.shutdown(tcp::socket::shutdown_both, ignored);
  }

  static asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, AdminHandler handler) {
    while (true) {
      auto [ec, socket] = co_await acceptor.async_accept(use_tuple);
      if (ec) {
        if (ec == asio::error::operation_aborted) co_return;
        continue;
      }
      asio::co_spawn(acceptor.get_executor(), session(std::move(socket), handler), asio::detached);
    }
  }
};

AdminServer::AdminServer() : impl_(std::make_unique<Impl>()) {}
AdminServer::~AdminServer() { stop(); }

std::string AdminServer::listen(const std::string& ip, std::uint16_t port, AdminHandler handler, std::error_code& ec) {
  boost::system::error_code bec;
  auto address = asio::ip::make_address(ip, bec);
  if (bec) {
    ec = std::make_error_code(std::errc::invalid_argument);
    return {};
  }
  auto acceptor = std::make_unique<tcp::acceptor>(impl_->ioc);
  const tcp::endpoint endpoint(address, port);
  acceptor->open(endpoint.protocol(), bec);
  if (!bec) acceptor->set_option(asio::socket_base::reuse_address(true), bec);
  if (!bec) acceptor->bind(endpoint, bec);
  if (!bec) acceptor->listen(asio::socket_base::max_listen_connections, bec);
  if (bec) {
    ec = std::error_code(bec.value(), std::system_category());
    return {};
  }
  const auto bound = acceptor->local_endpoint();
  asio::co_spawn(impl_->ioc, Impl::accept_loop(*acceptor, std::move(handler)), asio::detached);
  impl_->acceptors.push_back(std::move(acceptor));
  const std::string host = bound.address().is_v6() ? "[" + bound.address().to_string() + "]" : bound.address().to_string();
  return host + ":" + std::to_string(bound.port());
}

void AdminServer::start() {
  impl_->thread = std::thread([this] { impl_->ioc.run(); });
}

void AdminServer::stop() {
  if (!impl_ || !impl_->thread.joinable()) return;
  impl_->ioc.stop();
  impl_->thread.join();
}

}  // namespace meshd::metrics
