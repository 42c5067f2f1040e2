#!/usr/bin/env python3
"""Side-by-side comparison of meshd with a direct connection, HAProxy and nginx on one
machine, with the same load and the same CPU placement: the proxy on one core with
one worker, the load generator (meshd-bench) and the upstream (bench_upstream) on
the other. Writes the figures, each also as a ratio to HAProxy's in the same run,
between the markers of docs/benchmarks.md. Run through bench/compare.sh."""
import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_KIB = os.sysconf("SC_PAGE_SIZE") // 1024


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime


def rss_kib(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_KIB


def wait_port(port, timeout=10):
    for _ in range(int(timeout * 50)):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


class Proxy:
    def __init__(self, name, cmd, port, pid_of=None, env=None, h2_port=None):
        self.name, self.port = name, port
        self.h2_port = h2_port  # where HTTP/2 (h2c) is taken and sent on as HTTP/2; None: not compared
        self.proc = subprocess.Popen(["taskset", "-c", "0", *cmd], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        if not wait_port(port):
            raise RuntimeError(f"{name} did not start")
        self.pid = pid_of() if pid_of else self.proc.pid

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def write_bench_mesh(tmp, upstream_port, http2=True):
    """The mesh every benchmark runs meshd on: node `bench` calls svc.local, served by
    one static endpoint (bench_upstream); with `http2`, also h2.local and grpc.local
    (listeners http2 and grpc, the same endpoint). bench/ab.py leaves them out, so
    that builds from before HTTP/2 run it too. Returns the file's path."""
    names = ["svc.local"] + (["h2.local", "grpc.local"] if http2 else [])
    backends = "".join(f"\n        - {{virtualService: {{virtualServiceName: {n}}}}}" for n in names)
    nodes = [("origin", "http", "svc.local")] + ([("origin-h2", "http2", "h2.local"),
                                                  ("origin-grpc", "grpc", "grpc.local")] if http2 else [])
    text = f"""mesh: {{name: bench}}
virtualNodes:
  - name: bench
    spec:
      backends:{backends}
"""
    for node, protocol, _ in nodes:
        text += f"""  - name: {node}
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: {protocol}}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {upstream_port}}}]}}}}
"""
    text += "virtualServices:\n"
    for node, _, service in nodes:
        text += f"  - {{name: {service}, spec: {{provider: {{virtualNode: {{virtualNodeName: {node}}}}}}}}}\n"
    mesh = os.path.join(tmp, "mesh.yaml")
    with open(mesh, "w") as f:
        f.write(text)
    return mesh


def start_proxies(tmp, upstream_port, meshd, which, idle, others=()):
    proxies = []
    mesh = write_bench_mesh(tmp, upstream_port)
    for name, binary in ([("meshd", meshd)] if "meshd" in which else []) + list(others):
        port = free_port()
        # The egress port takes HTTP/2 too (h2c); h2.local and grpc.local go upstream over HTTP/2.
        proxies.append(Proxy(name, [binary, "run", "--mesh", mesh, "--node", "bench", "--workers", "1",
                                    "--egress-port", str(port), "--ingress-port", "0",
                                    "--admin", "127.0.0.1:0", "--set", "max_connections_per_listener=100000"],
                             port, h2_port=port))
    if "haproxy" in which:
        port = free_port()
        h2_port = free_port()
        cfg = os.path.join(tmp, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write(f"""global
  nbthread 1
  maxconn {idle + 1000}
defaults
  mode http
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  http-reuse always
frontend f
  bind 127.0.0.1:{port}
  default_backend b
backend b
  server s1 127.0.0.1:{upstream_port}
frontend f2
  bind 127.0.0.1:{h2_port} proto h2
  default_backend b2
backend b2
  server s1 127.0.0.1:{upstream_port} proto h2
""")
        proxies.append(Proxy("haproxy", ["haproxy", "-db", "-f", cfg], port, h2_port=h2_port))
    if "nginx" in which:
        port = free_port()
        cfg = os.path.join(tmp, "nginx.conf")
        with open(cfg, "w") as f:
            f.write(f"""worker_processes 1;
daemon off;
master_process off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
worker_rlimit_nofile {idle * 2 + 1000};
events {{ worker_connections {idle * 2 + 500}; }}
http {{
  access_log off;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp}; uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  upstream up {{ server 127.0.0.1:{upstream_port}; keepalive 64; }}
  server {{
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; proxy_buffering off; }}
  }}
}}
""")
        proxies.append(Proxy("nginx", ["nginx", "-c", cfg], port))
    return proxies


def idle_connections(port, n):
    """Opens n keep-alive connections, each sends one request, then stays idle."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(b"GET /bytes/2 HTTP/1.1\r\nHost: svc.local\r\n\r\n")
        socks.append(s)
    for s in socks:
        data = b""
        while b"\r\n\r\nxx" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    return socks


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(kind, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([kind, flags]) + stream.to_bytes(4, "big") + payload


def h2_literal(name, value):
    # HPACK: a literal field without indexing, new name, no Huffman (RFC 7541 §6.2.2).
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def idle_h2_connections(port, n, authority):
    """Opens n HTTP/2 connections (h2c), each makes one request, then stays idle."""
    block = (h2_literal(b":method", b"GET") + h2_literal(b":scheme", b"http") +
             h2_literal(b":path", b"/bytes/2") + h2_literal(b":authority", authority))
    hello = H2_PREFACE + h2_frame(4, 0, 0) + h2_frame(1, 0x5, 1, block)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        s.sendall(hello)
        socks.append(s)
    for s in socks:
        data, acked, done = b"", False, False
        for _ in range(1000):
            while len(data) >= 9 and len(data) >= 9 + int.from_bytes(data[:3], "big"):
                length, kind, flags = int.from_bytes(data[:3], "big"), data[3], data[4]
                data = data[9 + length:]
                if kind == 4 and not flags & 1 and not acked:
                    s.sendall(h2_frame(4, 1, 0))  # SETTINGS ACK
                    acked = True
                if kind in (0, 1) and flags & 1:
                    done = True
            if done:
                break
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return socks


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meshd", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--upstream", required=True)
    ap.add_argument("--duration", type=float, default=10)
    # 10,000 idle connections need about 21,000 descriptors in the proxy (HAProxy
    # reserves two per connection); where the hard limit is lower, fewer are used.
    import resource
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    default_idle = 10000 if hard == resource.RLIM_INFINITY or hard >= 22000 else max(1000, (hard - 2500) // 2 // 1000 * 1000)
    ap.add_argument("--idle", type=int, default=default_idle)
    ap.add_argument("--proxies", default="direct,meshd,haproxy,nginx")
    ap.add_argument("--write", help="docs/benchmarks.md to update between the markers")
    ap.add_argument("--scenarios", default="a,b,c,d,e,f,g,h", help="which of the scenarios a-h to run")
    ap.add_argument("--also", action="append", default=[], metavar="NAME=MESHD",
                    help="another meshd binary to run beside the first (a build to compare with)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="run the load scenarios this many times, the targets alternating, and keep the median")
    args = ap.parse_args()
    which = args.proxies.split(",")
    tmp = tempfile.mkdtemp(prefix="meshd-compare-")
    up = subprocess.Popen(["taskset", "-c", "1", args.upstream, "0"], stdout=subprocess.PIPE, text=True)
    upstream_port = int(up.stdout.readline())
    scenarios = [
        ("a", "keep-alive, 64 connections, 2-byte responses, max throughput", ["-c", "64"], "/bytes/2"),
        ("b", "64 KiB responses, 64 connections", ["-c", "64"], "/bytes/65536"),
        ("c", "a new connection per request, 16 connections", ["-c", "16", "--no-keepalive"], "/bytes/2"),
        ("d", "open loop 1,000 req/s, 1 KiB responses, 16 connections", ["-c", "16", "-R", "1000"], "/bytes/1024"),
        ("f", "HTTP/2 both sides, 16 connections x 16 streams, 2-byte responses", ["-c", "16", "--h2", "16"],
         "/bytes/2"),
        ("g", "gRPC unary both sides, 16 connections x 16 streams, 2-byte messages",
         ["-c", "16", "--h2", "16", "--grpc", "-b", "hi"], "/bench.Bench/Echo"),
    ]
    h2_host = {"f": "h2.local", "g": "grpc.local"}
    chosen = args.scenarios.split(",")
    scenarios = [s for s in scenarios if s[0] in chosen]
    rows = {}
    runs = {}
    try:
        others = [tuple(a.split("=", 1)) for a in args.also]
        proxies = start_proxies(tmp, upstream_port, args.meshd, which, args.idle, others)
        targets = ([("direct", None, upstream_port)] if "direct" in which else []) + [(p.name, p, p.port) for p in proxies]
        h2_ports = {"direct": upstream_port, **{p.name: p.h2_port for p in proxies}}
        for round_ in range(args.rounds):
            for name, proxy, port in targets:
                time.sleep(0.5)
                if round_ == 0:
                    rows[name] = {"rss_idle_kib": rss_kib(proxy.pid) if proxy else None}
                for key, title, extra, path in scenarios:
                    to, host = port, "svc.local"
                    if key in h2_host:
                        to, host = h2_ports.get(name), h2_host[key]
                        if to is None:
                            continue  # this proxy is not compared on HTTP/2
                    cpu0 = cpu_seconds(proxy.pid) if proxy else 0
                    res = subprocess.run(["taskset", "-c", "1", args.bench, "--quiet", "--json", "-d", str(args.duration),
                                          *extra, "--connect", f"127.0.0.1:{to}", f"http://{host}{path}"],
                                         capture_output=True, text=True, timeout=args.duration + 60)
                    r = json.loads(res.stdout)
                    cpu = (cpu_seconds(proxy.pid) - cpu0) if proxy else None
                    runs.setdefault((name, key), []).append({
                        "rps": r["throughput"], "p50": r["latency_ms"]["p50"], "p99": r["latency_ms"]["p99"],
                        "p999": r["latency_ms"]["p99.9"],
                        # Transport errors and every answer that is not a 2xx (a local reply is not a benchmark).
                        "errors": sum(r["errors"].values()) + sum(v for k, v in r["status"].items() if k != "2xx"),
                        "cpu_us": (cpu * 1e6 / r["requests"]) if proxy and r["requests"] else None})
                    print(f"{name:8s} {key}: {r['throughput']:9.0f} req/s  p99 {r['latency_ms']['p99']} ms"
                          + (f"  cpu {runs[(name, key)][-1]['cpu_us']:.2f} us/req" if proxy else ""), flush=True)
        for (name, key), results in runs.items():
            # The median round by throughput, its figures kept together.
            rows[name][key] = sorted(results, key=lambda r: r["rps"])[len(results) // 2]
        for name, proxy, port in targets:
            if "e" not in chosen:
                continue
            if proxy:
                rows[name]["rss_loaded_kib"] = rss_kib(proxy.pid)
                before = rss_kib(proxy.pid)
                socks = idle_connections(port, args.idle)
                time.sleep(1)
                after = rss_kib(proxy.pid)
                rows[name]["kib_per_idle"] = (after - before) / args.idle
                for s in socks:
                    s.close()
                print(f"{name:8s} e: {(after - before) / args.idle:.2f} KiB per idle connection; "
                      f"RSS idle {rows[name]['rss_idle_kib']} KiB, after load {rows[name]['rss_loaded_kib']} KiB", flush=True)
        for name, proxy, port in targets:
            # (h) the same for idle HTTP/2 connections (h2c, one request each).
            if "h" not in chosen or not proxy or proxy.h2_port is None:
                continue
            n = min(args.idle, 2000)
            before = rss_kib(proxy.pid)
            socks = idle_h2_connections(proxy.h2_port, n, b"svc.local")
            time.sleep(1)
            after = rss_kib(proxy.pid)
            rows[name]["kib_per_idle_h2"] = (after - before) / n
            rows[name]["idle_h2"] = n
            for s in socks:
                s.close()
            print(f"{name:8s} h: {(after - before) / n:.2f} KiB per idle HTTP/2 connection ({n})", flush=True)
        for p in proxies:
            p.stop()
    finally:
        up.terminate()
        shutil.rmtree(tmp, ignore_errors=True)
    table = render(rows, [s[0] for s in scenarios], {s[0]: s[1] for s in scenarios}, args)
    print(table)
    if args.write:
        with open(args.write) as f:
            doc = f.read()
        start, end = "<!-- compare:start -->", "<!-- compare:end -->"
        doc = doc[:doc.index(start) + len(start)] + "\n" + table + "\n" + doc[doc.index(end):]
        with open(args.write, "w") as f:
            f.write(doc)


def render(rows, keys, titles, args):
    base = rows.get("haproxy")

    def ratio(v, b):
        return f" ({v / b:.2f}×)" if v is not None and b else ""

    out = [f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {args.duration:.0f} s per scenario, "
           f"proxy pinned to core 0 with one worker, meshd-bench and bench_upstream on core 1. "
           "Ratios are to HAProxy in the same run.\n"]
    for k in keys:
        out.append(f"**({k}) {titles[k]}**\n")
        out.append("| target | req/s | proxy CPU µs/req | p50 ms | p99 ms | p99.9 ms | errors |")
        out.append("|---|---|---|---|---|---|---|")
        for name, row in rows.items():
            if k not in row:
                continue
            r = row[k]
            b = base[k] if base else None
            cpu = f"{r['cpu_us']:.1f}{ratio(r['cpu_us'], b and b['cpu_us'])}" if r["cpu_us"] is not None else "–"
            out.append(f"| {name} | {r['rps']:.0f}{ratio(r['rps'], b and b['rps'])} | {cpu} | "
                       f"{r['p50']}{ratio(r['p50'], b and b['p50'])} | {r['p99']}{ratio(r['p99'], b and b['p99'])} | "
                       f"{r['p999']}{ratio(r['p999'], b and b['p999'])} | {r['errors']} |")
        out.append("")
    if any("kib_per_idle_h2" in row for row in rows.values()):
        n = next(row["idle_h2"] for row in rows.values() if "idle_h2" in row)
        out.append(f"**(h) memory per idle HTTP/2 connection** (h2c, one request each, {n} connections)\n")
        out.append("| proxy | KiB per idle HTTP/2 connection |")
        out.append("|---|---|")
        for name, row in rows.items():
            if "kib_per_idle_h2" in row:
                b = base or {}
                out.append(f"| {name} | {row['kib_per_idle_h2']:.2f}{ratio(row['kib_per_idle_h2'], b.get('kib_per_idle_h2'))} |")
        out.append("")
    if not any("kib_per_idle" in row for row in rows.values()):
        return "\n".join(out)
    out.append(f"**(e) memory**: RSS in KiB, and KiB per idle keep-alive connection ({args.idle} connections)\n")
    out.append("| proxy | RSS idle | RSS after load | KiB per idle connection |")
    out.append("|---|---|---|---|")
    for name, row in rows.items():
        if row.get("kib_per_idle") is None:
            continue
        b = base or {}
        out.append(f"| {name} | {row['rss_idle_kib']}{ratio(row['rss_idle_kib'], b.get('rss_idle_kib'))} | "
                   f"{row['rss_loaded_kib']}{ratio(row['rss_loaded_kib'], b.get('rss_loaded_kib'))} | "
                   f"{row['kib_per_idle']:.2f}{ratio(row['kib_per_idle'], b.get('kib_per_idle'))} |")
    return "\n".join(out)


if __name__ == "__main__":
    main()
