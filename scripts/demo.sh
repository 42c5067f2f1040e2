#!/usr/bin/env bash
# The README's first command: installs what is missing, builds meshd, and runs the
# example canary mesh (examples/canary.yaml): two demo apps (user-service v1 on
# 127.0.0.1:18081, v2 on 127.0.0.1:18082) and the frontend's meshd sidecar (egress on
# 127.0.0.1:15001, admin on 127.0.0.1:9901). It sends 200 requests through the
# sidecar, prints the split, and keeps running until Ctrl-C (or exits at once with
# --once).
set -euo pipefail
cd "$(dirname "$0")/.."
once=0
[ "${1:-}" = "--once" ] && once=1
if [ -n "${MESHD_BINARY:-}" ]; then
  meshd="$MESHD_BINARY"  # a built binary (the test of this script): no install, no build
else
  bash scripts/install-deps.sh
  dir=$(bash scripts/build.sh release | tail -n 1)
  meshd="$dir/proxy/meshd"
fi
mesh=examples/canary.yaml

"$meshd" validate "$mesh"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
python3 examples/demo-app/app.py 18081 "user-service v1" & pids+=($!)
python3 examples/demo-app/app.py 18082 "user-service v2" & pids+=($!)
"$meshd" run --mesh "$mesh" --node frontend --egress-port 15001 --ingress-port 15000 \
  --admin 127.0.0.1:9901 --workers 1 & pids+=($!)
for _ in $(seq 1 100); do
  "$meshd" status --admin 127.0.0.1:9901 >/dev/null 2>&1 && break
  sleep 0.1
done
# The demo apps are Python: on a busy machine they may bind after meshd is up.
for port in 18081 18082; do
  for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
  done
done
python3 - <<'PY'
import http.client, collections
c = http.client.HTTPConnection("127.0.0.1", 15001, timeout=5)
seen = collections.Counter()
for _ in range(200):
    c.request("GET", "http://user-service.local/users/42")
    r = c.getresponse()
    seen[r.read().decode().split(":")[0]] += 1
print("\n200 requests through the frontend's sidecar (route 'canary', 90/10):")
for name, n in sorted(seen.items()):
    print(f"  {name}: {n} ({100 * n / 200:.0f}%)")
c.request("GET", "http://user-service.local/users/42", headers={"x-beta-user": "true"})
print("with x-beta-user: true (route 'beta'):", c.getresponse().read().decode().strip())
PY
cat <<'TXT'

Try it:
  curl -x http://127.0.0.1:15001 http://user-service.local/users/42
  curl -x http://127.0.0.1:15001 -H 'x-beta-user: true' http://user-service.local/
  curl -x http://127.0.0.1:15001 http://example.com/          # 403: DROP_ALL, not a backend
  curl http://127.0.0.1:9901/metrics                           # Prometheus metrics
  curl http://127.0.0.1:9901/clusters                          # endpoints and their state
TXT
if [ "$once" = 1 ]; then exit 0; fi
echo "meshd is running; Ctrl-C stops the demo."
wait "${pids[2]}"
