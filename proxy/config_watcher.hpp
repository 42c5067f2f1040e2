#pragma once
// What asks for a reload of the mesh file (SPEC §4): inotify on the file's directory
// (a write, an atomic rename, the `..data` symlink swap of a Kubernetes ConfigMap),
// debounced by 200 ms, and SIGHUP. The reload itself is the server's: this only says
// when and why. Main thread.
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>

#include <functional>
#include <memory>
#include <string>

#include "proxy/io.hpp"

namespace meshd::proxy {

class ConfigWatcher {
 public:
  // `reload(why, only_if_changed)`: a file event reloads only when the content
  // changed; SIGHUP always reloads.
  using Reload = std::function<void(const char* why, bool only_if_changed)>;
  ConfigWatcher(asio::io_context& main, std::string path, Reload reload);
  void start();
  void stop();

 private:
  void wait_for_events();
  void wait_for_hangup();

  asio::io_context& main_;
  std::string path_;
  Reload reload_;
  std::unique_ptr<asio::posix::stream_descriptor> watch_fd_;
  asio::steady_timer debounce_;
  asio::signal_set hangup_;
};

}  // namespace meshd::proxy
