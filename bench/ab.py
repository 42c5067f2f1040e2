#!/usr/bin/env python3
"""A/B of meshd binaries on one scenario: each binary runs as its own proxy (pinned to
core 0, one worker), and meshd-bench (core 1) drives them in alternating rounds, so
that machine noise falls on all of them alike. Prints the median proxy CPU µs per
request and requests per second of each. Use it to tell a regression from noise:

  python3 bench/ab.py --bench build/bench/meshd-bench --upstream build/bench/bench_upstream \\
      --rounds 14 OLD/proxy/meshd build/proxy/meshd
"""
import argparse
import json
import shutil
import statistics
import subprocess
import tempfile

from compare import cpu_seconds, free_port, wait_port, write_bench_mesh


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--seconds", type=float, default=3)
    ap.add_argument("--connections", type=int, default=64)
    ap.add_argument("--path", default="/bytes/2", help="bench_upstream path: /bytes/N answers N bytes")
    ap.add_argument("--no-keepalive", action="store_true", help="a new connection for every request")
    ap.add_argument("binaries", nargs="+")
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="meshd-ab-")
    up = subprocess.Popen(["taskset", "-c", "1", args.upstream, "0"], stdout=subprocess.PIPE, text=True)
    procs = []
    try:
        upstream_port = int(up.stdout.readline())
        mesh = write_bench_mesh(tmp, upstream_port, http2=False)  # OLD may predate HTTP/2
        for binary in args.binaries:
            port = free_port()
            p = subprocess.Popen(["taskset", "-c", "0", binary, "run", "--mesh", mesh, "--node", "bench", "--workers", "1",
                                  "--egress-port", str(port), "--ingress-port", "0", "--admin", "127.0.0.1:0"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            procs.append((len(procs), p, port))
            wait_port(port)
        cpu = [[] for _ in args.binaries]  # by position: the same binary may be given twice
        rps = [[] for _ in args.binaries]
        for rnd in range(args.rounds):
            for i, p, port in (procs if rnd % 2 == 0 else list(reversed(procs))):
                c0 = cpu_seconds(p.pid)
                out = subprocess.run(["taskset", "-c", "1", args.bench, "--quiet", "--json", "-d", str(args.seconds),
                                      "-c", str(args.connections), *(["--no-keepalive"] if args.no_keepalive else []),
                                      "--connect", f"127.0.0.1:{port}",
                                      f"http://svc.local{args.path}"],
                                     capture_output=True, text=True, timeout=args.seconds + 60).stdout
                r = json.loads(out)
                cpu[i].append((cpu_seconds(p.pid) - c0) * 1e6 / max(1, r["requests"]))
                rps[i].append(r["throughput"])
        for i, b in enumerate(args.binaries):
            print(f"{b}: median {statistics.median(cpu[i]):.1f} µs/req (runs {min(cpu[i]):.1f}–{max(cpu[i]):.1f}), "
                  f"median {statistics.median(rps[i]):.0f} req/s")
    finally:
        for _, p, _ in procs:
            p.terminate()
        up.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
