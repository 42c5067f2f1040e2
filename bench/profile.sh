#!/usr/bin/env bash
# Where a proxy's CPU per keep-alive request goes, meshd or HAProxy, under the load
# of scenario (a) of bench/compare.py: the proxy pinned to core 0 with one worker,
# meshd-bench (64 connections, 2-byte responses) and bench_upstream on core 1.
# Prints, per request: CPU (user and kernel, from /proc), system calls by kind, the
# wake-ups the proxy's core made of the processes on the other core (sched_wakeup
# on CPU 0, by woken command), and the top of a perf profile.
#   bash bench/profile.sh [meshd|haproxy] [SECONDS] [MESHD]
# Needs root (perf), perf and haproxy; builds nothing: run scripts/build.sh release first.
set -euo pipefail
cd "$(dirname "$0")/.."
which=${1:-meshd}
seconds=${2:-5}
meshd=${3:-build/proxy/meshd}
bench=build/bench
command -v perf >/dev/null || { echo "profile.sh: needs perf" >&2; exit 1; }
tmp=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$tmp"; }
trap cleanup EXIT
taskset -c 1 "$bench/bench_upstream" 0 > "$tmp/up.port" & pids+=($!)
for _ in $(seq 1 50); do [ -s "$tmp/up.port" ] && break; sleep 0.1; done
up=$(head -1 "$tmp/up.port")
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
case "$which" in
  meshd)
    cat > "$tmp/mesh.yaml" <<YAML
mesh: {name: bench}
virtualNodes:
  - name: bench
    spec: {backends: [{virtualService: {virtualServiceName: svc.local}}]}
  - name: origin
    spec:
      listeners: [{portMapping: {port: 8080, protocol: http}}]
      serviceDiscovery: {static: {endpoints: [{address: 127.0.0.1, port: $up}]}}
virtualServices:
  - {name: svc.local, spec: {provider: {virtualNode: {virtualNodeName: origin}}}}
YAML
    taskset -c 0 "$meshd" run --mesh "$tmp/mesh.yaml" --node bench --workers 1 --egress-port "$port" \
      --ingress-port 0 --admin 127.0.0.1:0 > "$tmp/proxy.out" 2>&1 & pids+=($!) ;;
  haproxy)
    command -v haproxy >/dev/null || { echo "profile.sh: needs haproxy (bench/compare.sh --install)" >&2; exit 1; }
    printf 'global\n  nbthread 1\ndefaults\n  mode http\n  timeout connect 5s\n  timeout client 300s\n  timeout server 300s\n  http-reuse always\nfrontend f\n  bind 127.0.0.1:%s\n  default_backend b\nbackend b\n  server s1 127.0.0.1:%s\n' \
      "$port" "$up" > "$tmp/haproxy.cfg"
    taskset -c 0 haproxy -db -f "$tmp/haproxy.cfg" > "$tmp/proxy.out" 2>&1 & pids+=($!) ;;
  *) echo "usage: $0 [meshd|haproxy] [SECONDS] [MESHD]" >&2; exit 2 ;;
esac
proxy=${pids[-1]}
for _ in $(seq 1 50); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.1; done
load() { taskset -c 1 "$bench/meshd-bench" --quiet --json -d "$1" -c 64 --connect "127.0.0.1:$port" http://svc.local/bytes/2; }
load 2 > /dev/null  # warm: pools, caches
# Three windows of one run: CPU and wake-ups, system calls, the profile.
load $((seconds * 3 + 2)) > "$tmp/load.json" & l=$!
sleep 1
read -r u0 s0 < <(awk '{print $14, $15}' "/proc/$proxy/stat")
t0=$(date +%s.%N)
perf record -q -e sched:sched_wakeup -C 0 -o "$tmp/wake.data" -- sleep "$seconds" > /dev/null 2>&1
t1=$(date +%s.%N)
read -r u1 s1 < <(awk '{print $14, $15}' "/proc/$proxy/stat")
perf stat -x, -e 'syscalls:sys_enter_sendto,syscalls:sys_enter_sendmsg,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_epoll_ctl,syscalls:sys_enter_clock_gettime' \
  -p "$proxy" -o "$tmp/sys.txt" -- sleep "$seconds" > /dev/null 2>&1
perf record -q -g -p "$proxy" -o "$tmp/prof.data" -- sleep "$seconds" > /dev/null 2>&1
wait "$l"
rps=$(python3 -c "import json, sys; print(json.load(open(sys.argv[1]))['throughput'])" "$tmp/load.json")
hz=$(getconf CLK_TCK)
python3 - "$which" "$rps" "$u0" "$s0" "$u1" "$s1" "$t0" "$t1" "$hz" "$seconds" "$tmp/sys.txt" <<'PY'
import sys
which, rps, u0, s0, u1, s1, t0, t1, hz, seconds, sysfile = sys.argv[1:]
rps, hz, seconds = float(rps), int(hz), float(seconds)
n = rps * (float(t1) - float(t0))
print(f"{which}: {rps:.0f} req/s over the run")
print(f"  CPU per request: {(int(u1) - int(u0) + int(s1) - int(s0)) / hz / n * 1e6:.2f} us "
      f"(user {(int(u1) - int(u0)) / hz / n * 1e6:.2f}, kernel {(int(s1) - int(s0)) / hz / n * 1e6:.2f})")
for line in open(sysfile):
    f = line.strip().split(",")
    if len(f) > 2 and f[0].replace(".", "").isdigit():
        print(f"  {f[2].split(':')[-1].replace('sys_enter_', ''):14s} per request: {float(f[0]) / (rps * seconds):.3f}")
PY
echo "  wake-ups made from the proxy's core, per request:"
perf script -i "$tmp/wake.data" 2>/dev/null | grep -o 'comm=[^ ]*' | sort | uniq -c | sort -rn | head -3 |
  awk -v n="$(python3 -c "print($rps * ($t1 - $t0))")" '{printf "    %-24s %.3f\n", substr($2, 6), $1 / n}'
# PROFILE_KEEP=FILE keeps the profile (perf report -i FILE); PROFILE_TOP=N lines of it.
[ -z "${PROFILE_KEEP:-}" ] || cp "$tmp/prof.data" "$PROFILE_KEEP"
echo "  top of the profile:"
perf report -i "$tmp/prof.data" --no-children --sort sym -g none 2>/dev/null | grep "%" | grep -v "^#" | head -"${PROFILE_TOP:-12}" || true

