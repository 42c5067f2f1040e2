#pragma once
// An accepted connection as its worker sees it, whatever protocol it speaks.

namespace meshd::proxy {

// Tracked by the worker (Worker::track) from accept to close: told when a drain
// begins and when the worker stops.
class ServedConnection {
 public:
  virtual ~ServedConnection() = default;
  // A drain began: an idle connection closes now; HTTP/2 says GOAWAY and lets its
  // open streams finish.
  virtual void close_if_idle() = 0;
  virtual void close() = 0;  // the worker stops
};

}  // namespace meshd::proxy
