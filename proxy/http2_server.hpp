#pragma once
// The HTTP/2 server adapter (SPEC §7): one accepted connection that began with the
// HTTP/2 preface. It drives an Http2ServerCodec with the connection's reads and
// writes and runs one RequestLifecycle per stream, concurrently, on the worker's
// thread; each stream is a DownstreamStream. The connection has one reader (the
// coroutine of run()), one writer (wakes when the codec has frames) and the streams'
// lifecycles; run() returns when all of them have ended.
//
// Memory is bounded per stream: request body bytes wait in the codec until the
// lifecycle takes them (the client's window opens by what was taken), and a stream's
// response data waits for the wire only up to kStreamSendBuffer before send_data()
// waits for room (the client's window, then the socket, hold the rest back).
#include <array>
#include <cstdint>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "metrics/stats.hpp"
#include "proxy/http2_server_codec.hpp"
#include "proxy/io.hpp"
#include "proxy/served_connection.hpp"

namespace meshd::proxy {

class Worker;

class Http2Connection final : public ServedConnection, private Http2ServerEvents {
 public:
  static constexpr std::size_t kStreamSendBuffer = 64 * 1024;

  // `first_bytes`: what the HTTP/1.1 adapter read before it saw the preface.
  Http2Connection(Worker& worker, tcp::socket socket, metrics::Direction direction, std::size_t listener,
                  std::string peer, std::string first_bytes);
  ~Http2Connection() override;
  Http2Connection(const Http2Connection&) = delete;
  Http2Connection& operator=(const Http2Connection&) = delete;

  // Serves the connection until it closes and every stream's lifecycle has ended.
  awaitable<void> run();

  // ServedConnection: a drain sends GOAWAY (open streams finish, then it closes).
  void close_if_idle() override;
  void close() override;

  Http2ServerCodec::End why() const { return codec_.why(); }

 private:
  class Stream;
  friend class Stream;

  // Http2ServerEvents
  void on_request(std::int32_t id, const RequestHead& head) override;
  void on_body(std::int32_t id) override;
  void on_writable(std::int32_t id) override;
  void on_close(std::int32_t id, std::uint32_t error_code) override;

  awaitable<void> write_loop();
  awaitable<void> serve_stream(std::shared_ptr<Stream> s);
  awaitable<void> linger(std::shared_ptr<Stream> s);
  void stream_done(Stream& s);
  void maybe_idle();  // no stream left: the idle timeout starts
  void go_away();     // GOAWAY with the last stream processed; open streams finish
  void kick() { writer_wake_.notify(); }  // the codec may have frames to write
  Stream* find(std::int32_t id) const;
  void end_all_streams();  // the connection is gone: every stream sees it closed

  Worker& worker_;
  ByteStream stream_;
  Watchdog watchdog_;
  metrics::Direction direction_;
  std::size_t listener_;
  std::string peer_;
  std::string first_bytes_;
  Http2ServerCodec codec_;
  std::map<std::int32_t, std::shared_ptr<Stream>> streams_;
  Signal writer_wake_;
  Signal all_done_;             // a task (the writer, a stream's lifecycle) ended
  std::size_t tasks_ = 0;       // the writer and the streams' lifecycles running
  bool closing_ = false;        // no more reading; the writer flushes and ends
  bool draining_ = false;       // GOAWAY sent (a drain or the idle timeout)
  std::size_t streams_seen_ = 0;  // requests received on this connection
  bool writer_done_ = false;
  std::list<ServedConnection*>::iterator tracked_;
  // Reads: a few bytes in the connection while it has no stream (an idle connection
  // holds no read buffer; what a full small read leaves is read at once into the
  // worker thread's buffer), a buffer of its own while streams are open.
  std::array<char, 256> idle_read_{};
  std::unique_ptr<char[]> busy_read_;
};

}  // namespace meshd::proxy
