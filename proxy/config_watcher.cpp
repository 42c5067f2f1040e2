#include "proxy/config_watcher.hpp"

#include <sys/inotify.h>
#include <unistd.h>

#include <csignal>

#include "net/log.hpp"

namespace meshd::proxy {

ConfigWatcher::ConfigWatcher(asio::io_context& main, std::string path, Reload reload)
    : main_(main), path_(std::move(path)), reload_(std::move(reload)), debounce_(main), hangup_(main, SIGHUP) {}

void ConfigWatcher::start() {
  wait_for_hangup();
  const auto slash = path_.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : (slash == 0 ? "/" : path_.substr(0, slash));
  const int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  if (fd < 0) {
    log::write(log::Level::warning, "cannot watch " + dir + " (reload with SIGHUP or POST /reload)");
    return;
  }
  if (inotify_add_watch(fd, dir.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_ATTRIB) < 0) {
    ::close(fd);
    log::write(log::Level::warning, "cannot watch " + dir + " (reload with SIGHUP or POST /reload)");
    return;
  }
  watch_fd_ = std::make_unique<asio::posix::stream_descriptor>(main_, fd);
  wait_for_events();
}

void ConfigWatcher::stop() {
  error_code ec;
  hangup_.cancel(ec);
  debounce_.cancel();
  if (watch_fd_) watch_fd_->cancel(ec);
}

void ConfigWatcher::wait_for_events() {
  watch_fd_->async_wait(asio::posix::stream_descriptor::wait_read, [this](const error_code& ec) {
    if (ec) return;
    char buf[4096];
    while (::read(watch_fd_->native_handle(), buf, sizeof buf) > 0) {
    }
    // A burst of events (an editor's save, a ConfigMap swap) is one reload of the last.
    debounce_.expires_after(std::chrono::milliseconds(200));
    debounce_.async_wait([this](const error_code& e) {
      if (!e) reload_("file changed", true);
    });
    wait_for_events();
  });
}

void ConfigWatcher::wait_for_hangup() {
  hangup_.async_wait([this](const error_code& ec, int) {
    if (ec) return;
    reload_("SIGHUP", false);
    wait_for_hangup();
  });
}

}  // namespace meshd::proxy
