#pragma once
// How many workers `meshd run` starts by default (SPEC §2): the CPUs this process may
// run on, capped by the cgroup CPU quota (rounded up), at least 1. Envoy uses the
// host's hardware threads, which over-provisions sidecars (proxy-anchors §4 item 6).
#include <optional>
#include <string_view>

namespace meshd::net {

// The quota in CPUs from cgroup v2 `cpu.max` text ("max 100000" or "150000 100000"),
// or nullopt when unlimited or unreadable.
std::optional<double> parse_cgroup_v2_cpu_max(std::string_view text);
// The quota from cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` contents.
std::optional<double> parse_cgroup_v1_quota(std::string_view quota_us, std::string_view period_us);

unsigned workers_for(unsigned affinity_cpus, std::optional<double> quota_cpus);

// Reads the affinity mask and this process's cgroup (v2, then v1).
unsigned default_workers();

}  // namespace meshd::net
