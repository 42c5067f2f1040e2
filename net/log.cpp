#include "net/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>

namespace meshd::log {
namespace {
std::atomic<Level> threshold{Level::info};
}

std::optional<Level> parse_level(std::string_view name) {
  if (name == "trace") return Level::trace;
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warning" || name == "warn") return Level::warning;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  return std::nullopt;
}

void set_level(Level level) { threshold.store(level, std::memory_order_relaxed); }

bool enabled(Level level) {
  const Level t = threshold.load(std::memory_order_relaxed);
  return level != Level::off && t != Level::off && level >= t;
}

void always(Level level, std::string_view text) {
  std::string line;
  line.reserve(text.size() + 8);
  line.append("meshd: ").append(text);
  if (line.back() != '\n') line.push_back('\n');
  const int fd = level >= Level::warning ? STDERR_FILENO : STDOUT_FILENO;
  std::string_view rest(line);
  for (int tries = 0; !rest.empty() && tries < 100; ++tries) {
    const ssize_t n = ::write(fd, rest.data(), rest.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // a closed or full log stream must not stop the proxy
    rest.remove_prefix(static_cast<std::size_t>(n));
  }
}

void write(Level level, std::string_view text) {
  if (enabled(level)) always(level, text);
}

}  // namespace meshd::log
