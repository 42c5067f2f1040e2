#include "net/cpu.hpp"

#include <sched.h>

#include <charconv>
#include <cmath>
#include <fstream>
#include <sstream>
#include <string>

namespace meshd::net {
namespace {

std::optional<double> to_number(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
  long long v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
  return static_cast<double>(v);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return {};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

// The cgroup path of this process for a controller ("" for the v2 unified hierarchy).
std::string own_cgroup(std::string_view controller) {
  std::istringstream lines(read_file("/proc/self/cgroup"));
  std::string line;
  while (std::getline(lines, line)) {
    // hierarchy-ID:controller-list:path
    const auto a = line.find(':');
    const auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string_view controllers(line.data() + a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (controller.empty() ? controllers.empty() : controllers.find(controller) != std::string_view::npos) {
      return path;
    }
  }
  return {};
}

}  // namespace

std::optional<double> parse_cgroup_v2_cpu_max(std::string_view text) {
  const auto space = text.find(' ');
  if (space == std::string_view::npos) return std::nullopt;
  const auto quota = text.substr(0, space);
  if (quota == "max") return std::nullopt;
  auto q = to_number(quota);
  auto p = to_number(text.substr(space + 1));
  if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;
  return *q / *p;
}

std::optional<double> parse_cgroup_v1_quota(std::string_view quota_us, std::string_view period_us) {
  auto q = to_number(quota_us);
  auto p = to_number(period_us);
  if (!q || !p || *q <= 0 || *p <= 0) return std::nullopt;  // -1 = unlimited
  return *q / *p;
}

unsigned workers_for(unsigned affinity_cpus, std::optional<double> quota_cpus) {
  unsigned n = affinity_cpus == 0 ? 1 : affinity_cpus;
  if (quota_cpus) {
    const auto q = static_cast<unsigned>(std::ceil(*quota_cpus - 1e-9));
    if (q < n) n = q;
  }
  return n == 0 ? 1 : n;
}

unsigned default_workers() {
  unsigned affinity = 0;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) == 0) affinity = static_cast<unsigned>(CPU_COUNT(&set));
  std::optional<double> quota;
  const std::string v2 = read_file("/sys/fs/cgroup" + own_cgroup("") + "/cpu.max");
  if (!v2.empty()) {
    quota = parse_cgroup_v2_cpu_max(v2);
  } else {
    const std::string dir = "/sys/fs/cgroup/cpu" + own_cgroup("cpu");
    quota = parse_cgroup_v1_quota(read_file(dir + "/cpu.cfs_quota_us"), read_file(dir + "/cpu.cfs_period_us"));
  }
  return workers_for(affinity, quota);
}

}  // namespace meshd::net
