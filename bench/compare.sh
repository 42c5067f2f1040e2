#!/usr/bin/env bash
# Compares meshd with a direct connection, HAProxy and nginx on this machine (see
# bench/compare.py) and writes the figures into docs/benchmarks.md.
#   bash bench/compare.sh [--install] [--duration S] [--idle N] [--proxies direct,meshd,haproxy,nginx]
# --install installs haproxy and nginx with apt first. Needs two cores.
set -euo pipefail
cd "$(dirname "$0")/.."
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --install) install=1 ;;
    *) args+=("$1") ;;
  esac
  shift
done
bash scripts/install-deps.sh
if [ "${install:-0}" = 1 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends haproxy nginx-light >/dev/null
fi
for tool in haproxy nginx taskset; do
  command -v "$tool" >/dev/null || { echo "compare.sh: $tool is missing (run with --install)" >&2; exit 1; }
done
dir=$(bash scripts/build.sh release | tail -n 1)
cmake --build "$dir" --target meshd-bench bench_upstream -j 2 >&2
ulimit -n "$(ulimit -Hn)"
python3 bench/compare.py --meshd "$dir/proxy/meshd" --bench "$dir/bench/meshd-bench" \
  --upstream "$dir/bench/bench_upstream" --write docs/benchmarks.md "${args[@]}"
