#pragma once
// What the HTTP/2 server and client codecs share (included by their .cpp files only:
// it names nghttp2's types): field lists as nghttp2 takes them, a stream's outgoing
// body with its trailers (a data provider that defers when it has nothing), a
// stream's incoming body (bytes kept until taken, the peer's window opened by what
// was taken), and the collection of a session's output.
#include <nghttp2/nghttp2.h>

#include <boost/container/small_vector.hpp>
#include <array>
#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "proxy/message.hpp"

namespace meshd::proxy::h2 {

inline std::string_view view(nghttp2_rcbuf* b) {
  const auto v = nghttp2_rcbuf_get_buf(b);
  return {reinterpret_cast<const char*>(v.base), v.len};
}

// HTTP/2 field names are lowercase (RFC 9113 §8.2.1).
std::string lowercase(std::string_view name);
// Connection-specific fields, which HTTP/2 must not carry (RFC 9113 §8.2.2).
bool hop_by_hop(std::string_view lower_name);

// A header block as nghttp2 takes it (it copies the block on submission). Names
// already lowercase and values are not copied (they outlive the submission); what
// is made here (lowercased names, numbers, joined values) goes into an arena inside
// the list: a typical block costs no allocation (it lives on the stack).
class NvList {
 public:
  NvList() = default;
  NvList(const NvList&) = delete;  // entries point into the arena
  NvList& operator=(const NvList&) = delete;
  void add(std::string_view name, std::string_view value);
  // `name` lowercased: itself when it is already lowercase, else a copy.
  std::string_view lower(std::string_view name);
  // Fields of a message, lowercased, connection-specific ones and content-length
  // left out; `length` (when set) goes where the sender had its framing field.
  void add_fields(std::span<const Field> fields, std::size_t framing_at, std::optional<std::uint64_t> length);
  // A trailer block: names lowercased, connection-specific ones left out.
  void add_trailers(std::span<const Field> trailers);
  std::string_view keep(std::string_view text);  // stored for the list's lifetime
  const nghttp2_nv* data() const { return nva_.data(); }
  std::size_t size() const { return nva_.size(); }
  bool empty() const { return nva_.empty(); }

 private:
  std::array<char, 1024> arena_;      // views into it stay valid (never moved)
  std::size_t used_ = 0;
  std::deque<std::string> overflow_;  // what did not fit (stable addresses)
  boost::container::small_vector<nghttp2_nv, 24> nva_;
};

// The outgoing body of a stream: data submitted and not yet framed, its end, and the
// trailers that follow it. nghttp2 pulls it through read(); with nothing to give
// (and no end) the stream is deferred and resumed by the next submission.
class SendBody {
 public:
  // Copies `data`; `end`: the body ends with it (no trailers follow).
  void submit(nghttp2_session* session, std::int32_t stream, std::string_view data, bool end);
  void submit_trailers(nghttp2_session* session, std::int32_t stream, std::span<const Field> trailers);
  // nghttp2's data source read callback for this body.
  ssize_t read(nghttp2_session* session, std::int32_t stream, std::uint8_t* buf, std::size_t length,
               std::uint32_t* flags);
  std::size_t unsent() const { return data_.size() - at_; }
  bool ended() const { return end_; }

 private:
  void resume(nghttp2_session* session, std::int32_t stream);
  std::string data_;
  std::size_t at_ = 0;
  bool end_ = false;
  bool deferred_ = false;
  NvList trailers_;
};

// The incoming body of a stream: bytes received and not yet taken, then its end with
// trailers. Taking gives the bytes back to the stream's window (automatic window
// updates are off): what bounds memory is what the reader has not taken, at most a
// stream window per stream. The connection's window is given back as bytes arrive
// (the codecs do it), so that stalled streams do not stop the others.
class RecvBody {
 public:
  void append(std::string_view bytes) { data_.append(bytes); }
  void end() { end_ = true; }
  bool ended() const { return end_; }
  std::size_t held() const { return data_.size(); }
  std::vector<Field>& trailers() { return trailers_; }
  // The next event (data or the end) or nullopt; data stays valid until the next take.
  // `closing`: the stream is being closed (only the connection's window opens).
  std::optional<BodyEvent> take(nghttp2_session* session, std::int32_t stream, bool closing = false);

 private:
  std::string data_;
  std::string taken_;
  std::vector<Field> trailers_;
  bool end_ = false;
  bool end_delivered_ = false;
};

// Copies of fields into one arena (the codec's memory for a stream goes when the
// stream closes, which may be before its lifecycle ends).
class FieldCopy {
 public:
  FieldCopy() = default;
  FieldCopy(const FieldCopy&) = delete;  // the fields point into the arena
  FieldCopy& operator=(const FieldCopy&) = delete;
  // `join_cookies`: HTTP/2 may split Cookie into several fields; one field joined
  // with "; " is what an HTTP/1.1 upstream must get (RFC 9113 §8.2.3). `also`: other
  // texts (a head's pseudo-header values) copied into the same arena, each view
  // pointed at its copy.
  void assign(std::span<const Field> in, bool join_cookies, std::span<std::string_view* const> also = {});
  std::span<const Field> fields() const { return fields_; }
  // Takes the first field named `name` (lowercase) out; where it was, or npos.
  std::size_t remove(std::string_view name) {
    for (std::size_t i = 0; i < fields_.size(); ++i) {
      if (fields_[i].name == name) {
        fields_.erase(fields_.begin() + static_cast<std::ptrdiff_t>(i));
        return i;
      }
    }
    return kFramingAtEnd;
  }

 private:
  std::string arena_;
  std::vector<Field> fields_;
};


// Appends the session's frames to `out` until it has `cap` bytes or nothing more.
void collect(nghttp2_session* session, std::string& out, std::size_t cap);

}  // namespace meshd::proxy::h2
