#include <catch2/catch.hpp>

#include "net/cpu.hpp"

using namespace meshd::net;

TEST_CASE("cgroup v2 cpu.max gives the quota in CPUs") {
  CHECK_FALSE(parse_cgroup_v2_cpu_max("max 100000\n"));
  CHECK(parse_cgroup_v2_cpu_max("150000 100000\n").value() == Approx(1.5));
  CHECK(parse_cgroup_v2_cpu_max("50000 100000").value() == Approx(0.5));
  CHECK_FALSE(parse_cgroup_v2_cpu_max("garbage"));
}

TEST_CASE("cgroup v1 quota: -1 is unlimited") {
  CHECK_FALSE(parse_cgroup_v1_quota("-1\n", "100000\n"));
  CHECK(parse_cgroup_v1_quota("200000\n", "100000\n").value() == Approx(2.0));
}

TEST_CASE("workers: affinity capped by the quota rounded up, at least one") {
  CHECK(workers_for(8, std::nullopt) == 8);
  CHECK(workers_for(8, 1.5) == 2);
  CHECK(workers_for(8, 0.25) == 1);
  CHECK(workers_for(2, 4.0) == 2);
  CHECK(workers_for(0, std::nullopt) == 1);
  CHECK(default_workers() >= 1);
}
