#pragma once
// The HTTP/1.1 codec, sans-I/O: bytes in, one event out at a time. The head is checked
// on its raw bytes (http1_head.hpp), copied once into the message, and its fields are
// views into that copy. A body with a Content-Length, or until the connection closes,
// is counted here; llhttp (strict mode) frames only chunked bodies, after a canonical
// chunked head: a head is scanned once. Body data is handed out as views into the caller's
// input, so nothing is buffered here: the caller writes it on before reading more.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/http1_head.hpp"

struct llhttp__internal_s;

namespace meshd::proxy {

struct MessageHead {
  std::string raw;                // the head as received (HTTP/1.2+ rewritten to 1.1)
  std::vector<FieldView> fields;  // views into raw, in order, names as sent
  std::string_view method;        // requests
  std::string_view target;
  int status = 0;                 // responses
  std::string_view reason;
  int minor_version = 1;
  bool chunked = false;
  std::optional<std::uint64_t> content_length;

  // The first value of a field (names compared case-insensitively), or nullopt.
  std::optional<std::string_view> get(std::string_view name) const;
  // Whether a comma-separated field (e.g. Connection) lists `token`.
  bool has_token(std::string_view name, std::string_view token) const;
};

class Http1Parser {
 public:
  enum class Kind { request, response };
  enum class Event {
    need_more,         // give more input (after the consumed bytes)
    head,              // head() is ready
    body,              // body() is a piece of the body (a view into the last input)
    message_complete,  // the message ended; the next parse() starts a new one
    error,             // error_status() / error_reason(); the connection must close
  };
  struct Step {
    Event event = Event::need_more;
    std::size_t consumed = 0;  // bytes of the input used, whatever the event
  };

  Http1Parser(Kind kind, HeadLimits limits);
  ~Http1Parser();
  Http1Parser(const Http1Parser&) = delete;
  Http1Parser& operator=(const Http1Parser&) = delete;

  // Parses from the start of `input`. A head must be given whole in one input (the
  // caller accumulates until this returns something other than need_more with
  // consumed 0, up to the head size limit).
  Step parse(std::string_view input);
  // The connection closed: ends a body delimited by the close (a response without
  // length), else it is an error when a message was under way.
  Step finish();

  // For responses: the request was HEAD (no body follows whatever the head says).
  void expect_no_body(bool v) { no_body_ = v; }

  const MessageHead& head() const { return head_; }
  MessageHead& head() { return head_; }
  std::string_view body() const { return body_; }
  // Trailer fields of a chunked message (names as sent), valid from its
  // message_complete until the next message's head.
  const std::vector<FieldView>& trailers() const { return trailers_; }
  HeadVerdict::Status error_status() const { return error_status_; }
  const char* error_reason() const { return error_reason_; }
  bool in_message() const { return state_ != State::idle; }
  // Whether the body runs until the connection closes (responses without length).
  bool body_until_close() const;
  bool keep_alive() const;

 private:
  enum class State { idle, body, done };
  enum class Framing : std::uint8_t { none, length, chunked, until_close };
  Step fail(HeadVerdict::Status s, const char* reason, std::size_t consumed);
  static int on_body(llhttp__internal_s* p, const char* at, std::size_t len);
  static int on_message_complete(llhttp__internal_s* p);
  static int on_headers_complete(llhttp__internal_s* p);
  static int on_trailer_name(llhttp__internal_s* p, const char* at, std::size_t len);
  static int on_trailer_value(llhttp__internal_s* p, const char* at, std::size_t len);
  void index_trailers();

  Kind kind_;
  HeadLimits limits_;
  llhttp__internal_s* parser_;
  void* settings_;
  MessageHead head_;
  State state_ = State::idle;
  std::string_view body_;
  // Trailers: bytes as "name\0value\0" pairs (a field may arrive over several inputs),
  // indexed into trailers_ when the message completes.
  std::string trailer_raw_;
  std::size_t trailer_count_ = 0;
  bool in_trailer_value_ = false;
  std::vector<FieldView> trailers_;
  bool got_body_ = false;
  Framing framing_ = Framing::none;
  std::uint64_t remaining_ = 0;  // of a length-delimited body
  bool keep_alive_ = true;
  bool complete_ = false;
  bool no_body_ = false;
  HeadVerdict::Status error_status_ = HeadVerdict::Status::ok;
  const char* error_reason_ = "";
};

}  // namespace meshd::proxy
