#!/usr/bin/env bash
# A soak run: meshd under mixed load with faults for --minutes (default 10), RSS and
# descriptors sampled every 10 s; the figures go into docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=$(bash scripts/build.sh release | tail -n 1)
cmake --build "$dir" --target meshd-bench bench_upstream -j 2 >&2
python3 bench/soak.py --meshd "$dir/proxy/meshd" --bench "$dir/bench/meshd-bench" \
  --upstream "$dir/bench/bench_upstream" --write docs/reliability.md "$@"
