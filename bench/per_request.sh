#!/usr/bin/env bash
# System calls and malloc calls per request of a meshd binary, under keep-alive load
# of 2-byte responses (bench_upstream, meshd-bench): strace -c counts the calls and
# perf's uprobes on libc's malloc and free count allocations, both attached to the
# running meshd (one worker). The figures are counts, not times: they do not depend
# on the machine's noise (docs/benchmarks.md).
#   bash bench/per_request.sh [MESHD] [REQUESTS] [CONNECTIONS]
# Needs root (perf probe, strace); builds nothing: run scripts/build.sh release first.
set -euo pipefail
cd "$(dirname "$0")/.."
meshd=${1:-build/proxy/meshd}
requests=${2:-20000}
connections=${3:-16}
bench=build/bench
command -v strace >/dev/null && command -v perf >/dev/null || { echo "per_request.sh: needs strace and perf" >&2; exit 1; }
libc=$(ldd "$meshd" | awk '/libc.so.6/ {print $3}')
perf probe -q -x "$libc" --add malloc 2>/dev/null || true
perf probe -q -x "$libc" --add free 2>/dev/null || true
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
"$bench/bench_upstream" 0 > "$tmp/up.port" & pids+=($!)
for _ in $(seq 1 50); do [ -s "$tmp/up.port" ] && break; sleep 0.1; done
up=$(head -1 "$tmp/up.port")
cat > "$tmp/mesh.yaml" <<YAML
mesh: {name: bench, spec: {egressFilter: {type: DROP_ALL}}}
virtualNodes:
  - name: bench
    spec:
      listeners: [{portMapping: {port: 9000, protocol: http}}]
      serviceDiscovery: {dns: {hostname: bench.local}}
      backends: [{virtualService: {virtualServiceName: svc.local}}]
  - name: up
    spec:
      listeners: [{portMapping: {port: 8080, protocol: http}}]
      serviceDiscovery: {static: {endpoints: [{address: 127.0.0.1, port: $up}]}}
virtualServices:
  - {name: svc.local, spec: {provider: {virtualNode: {virtualNodeName: up}}}}
YAML
"$meshd" run --mesh "$tmp/mesh.yaml" --node bench --workers 1 --egress-port 0 --ingress-port 0 \
  --admin 127.0.0.1:0 > "$tmp/meshd.out" 2>&1 & m=$!
pids+=($m)
for _ in $(seq 1 50); do grep -q 'listening egress' "$tmp/meshd.out" && break; sleep 0.1; done
egress=$(grep -o 'egress 127.0.0.1:[0-9]*' "$tmp/meshd.out" | cut -d: -f2)
load() { "$bench/meshd-bench" --quiet -n "$1" -c "$connections" --connect "127.0.0.1:$egress" http://svc.local/bytes/2 >/dev/null; }
load 2000  # warm: pools, caches
perf stat -e probe_libc:malloc,probe_libc:free -p "$m" -o "$tmp/perf.txt" & p=$!
strace -c -f -p "$m" -o "$tmp/strace.txt" 2>/dev/null & s=$!
sleep 0.5
load "$requests"
sleep 0.3
kill -INT "$p" "$s"
wait "$p" "$s" 2>/dev/null || true
echo "$meshd: $requests requests, $connections connections"
awk -v n="$requests" '/probe_libc:(malloc|free)/ {gsub(",", "", $1); printf "  %-8s per request: %.2f\n", substr($2, 12), $1 / n}' "$tmp/perf.txt"
awk -v n="$requests" '$NF != "total" && NF >= 5 && $4 ~ /^[0-9]+$/ && $4 / n >= 0.01 {printf "  %-14s per request: %.2f\n", $NF, $4 / n}
                      $NF == "total" {printf "  %-14s per request: %.2f\n", "all syscalls", $4 / n}' "$tmp/strace.txt"
