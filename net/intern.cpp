#include "net/intern.hpp"

#include <mutex>
#include <unordered_set>

namespace meshd::net {

const std::string* intern(std::string_view text) {
  static std::mutex mutex;
  static std::unordered_set<std::string>* table = new std::unordered_set<std::string>();  // never freed
  std::lock_guard lock(mutex);
  return &*table->emplace(text).first;
}

const std::string* empty_label() {
  static const std::string* empty = intern("");
  return empty;
}

}  // namespace meshd::net
