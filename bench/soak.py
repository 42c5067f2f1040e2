#!/usr/bin/env python3
"""Soak run (issue 6): meshd under mixed load for a fixed time with faults injected,
sampling its RSS and open descriptors every 10 s. Prints the samples and a summary,
and with --write appends them to docs/reliability.md between its soak markers."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "integration"))
import harness  # noqa: E402
from harness import FakeDns, Meshd, Upstream  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshd", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--write")
    args = ap.parse_args()
    harness.MESHD = args.meshd
    fast = subprocess.Popen([args.upstream, "0"], stdout=subprocess.PIPE, text=True)
    fast_port = int(fast.stdout.readline())
    faulty = Upstream("faulty")
    dns = FakeDns()
    dns.records["fast.soak"] = ["127.0.0.1"]
    mesh = f"""
mesh: {{name: soak}}
virtualNodes:
  - name: client
    spec:
      backends:
        - virtualService: {{virtualServiceName: fast.local}}
        - virtualService: {{virtualServiceName: faulty.local}}
  - name: fast
    spec:
      listeners: [{{portMapping: {{port: {fast_port}, protocol: http}}}}]
      serviceDiscovery: {{dns: {{hostname: fast.soak, responseType: ENDPOINTS}}}}
  - name: faulty
    spec:
      listeners:
        - portMapping: {{port: 8080, protocol: http}}
          outlierDetection: {{maxServerErrors: 5, interval: {{value: 1, unit: s}},
                             baseEjectionDuration: {{value: 2, unit: s}}, maxEjectionPercent: 50}}
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {faulty.port}}}, {{address: 127.0.0.1, port: {fast_port}}}]}}}}
virtualServices:
  - {{name: fast.local, spec: {{provider: {{virtualNode: {{virtualNodeName: fast}}}}}}}}
  - {{name: faulty.local, spec: {{provider: {{virtualRouter: {{virtualRouterName: r}}}}}}}}
virtualRouters:
  - {{name: r, spec: {{listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]}}}}
routes:
  - name: all
    virtualRouterName: r
    spec:
      httpRoute:
        match: {{prefix: /}}
        action: {{weightedTargets: [{{virtualNode: faulty, weight: 1}}]}}
        timeout: {{perRequest: {{value: 1, unit: s}}}}
        retryPolicy: {{maxRetries: 2, perRetryTimeout: {{value: 500, unit: ms}}, httpRetryEvents: [server-error]}}
"""
    m = Meshd(mesh, "client", workers=2, extra_args=["--set", f"dns_resolvers=127.0.0.1:{dns.port}",
                                                    "--set", "dns_refresh=1s", "--set", "upstream_idle_timeout_mesh=2s"])
    seconds = int(args.minutes * 60)
    egress = m.port("egress")
    # Mixed load: fast small and 64 KiB responses, and a faulty service (some 503s,
    # resets, hangs) through the outlier detector and retries.
    loads = [
        [args.bench, "--quiet", "--json", "-c", "8", "-R", "300", "-d", str(seconds), "--connect", f"127.0.0.1:{egress}",
         f"http://fast.local:{fast_port}/bytes/1024", f"http://fast.local:{fast_port}/bytes/65536"],
        [args.bench, "--quiet", "--json", "-c", "8", "-R", "100", "-d", str(seconds), "--timeout", "3",
         "--connect", f"127.0.0.1:{egress}", "http://faulty.local/ok", "http://faulty.local/status/503",
         "http://faulty.local/reset", "http://faulty.local/sleep/1500"],
    ]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for cmd in loads]
    samples = []
    start = time.time()
    for i in range(seconds // 10 + 1):
        # Faults every 10 s: the DNS answer flips, the faulty upstream toggles 500s.
        dns.records["fast.soak"] = ["127.0.0.1"] if i % 3 else "SERVFAIL"
        faulty.force_status = 500 if i % 4 == 1 else None
        samples.append((int(time.time() - start), m.rss_kib(), m.open_fds()))
        print(f"{samples[-1][0]:4d}s  RSS {samples[-1][1]} KiB  fds {samples[-1][2]}", flush=True)
        time.sleep(max(0, start + 10 * (i + 1) - time.time()))
    results = [json.loads(p.communicate()[0]) for p in procs]
    code = m.stop()
    fast.terminate()
    faulty.close()
    dns.close()
    warm = samples[min(3, len(samples) - 1)]
    last = samples[-1]
    peak_rss = max(s[1] for s in samples[3:]) if len(samples) > 3 else last[1]
    lines = [f"Soak {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.minutes:g} minutes, "
             f"`python3 bench/soak.py --minutes {args.minutes:g}` (Release build, 2 workers).", "",
             "| load | requests | errors by kind | status classes | p99 ms |", "|---|---|---|---|---|"]
    for name, r in zip(("fast (1 KiB and 64 KiB, 300 req/s)", "faulty (ok, 503, reset, slow; 100 req/s)"), results):
        lines.append(f"| {name} | {r['requests']} | {r['errors'] or '-'} | {r['status']} | {r['latency_ms']['p99']} |")
    lines += ["", f"RSS after warm-up (30 s) {warm[1]} KiB, at the end {last[1]} KiB "
                  f"({100.0 * (last[1] - warm[1]) / warm[1]:+.1f} %), peak after warm-up {peak_rss} KiB; "
                  f"open descriptors {warm[2]} → {last[2]}; exit code after the drain {code}.", "",
              "| t (s) | RSS (KiB) | fds |", "|---|---|---|"]
    lines += [f"| {t} | {rss} | {fds} |" for t, rss, fds in samples]
    text = "\n".join(lines)
    print(text)
    if args.write:
        with open(args.write) as f:
            doc = f.read()
        start_m, end_m = "<!-- soak:start -->", "<!-- soak:end -->"
        doc = doc[:doc.index(start_m) + len(start_m)] + "\n" + text + "\n" + doc[doc.index(end_m):]
        with open(args.write, "w") as f:
            f.write(doc)
    return 0 if code == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
