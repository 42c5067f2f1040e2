#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz) with clang-14 and runs each for a bounded
# time on a copy of its committed seed corpus. A crash fails the run and leaves the
# reproducer in build-fuzz/crashes/. Usage: scripts/fuzz.sh [SECONDS per target, default 20]
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
bash scripts/install-deps.sh
cmake -S tests/fuzz -B build-fuzz -G Ninja -DCMAKE_C_COMPILER=clang-14 -DCMAKE_CXX_COMPILER=clang++-14 >/dev/null
cmake --build build-fuzz -j "${MESHD_JOBS:-2}" >&2
mkdir -p build-fuzz/crashes
status=0
for target in http1_request http1_response http2_server http2_client mesh_loader route_match; do
  work=$(mktemp -d)
  cp -r "tests/fuzz/corpus/$target/." "$work/"
  echo "=== fuzz_$target for ${seconds}s"
  if ! build-fuzz/fuzz_$target -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix=build-fuzz/crashes/ -print_final_stats=1 "$work" 2>build-fuzz/$target.log; then
    status=1
    tail -40 build-fuzz/$target.log
  fi
  grep -E "^stat::number_of_executed_units|^Done" build-fuzz/$target.log | tail -2 || true
  rm -rf "$work"
done
exit $status
