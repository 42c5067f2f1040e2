#!/usr/bin/env python3
"""Black-box tests of the meshd command line (SPEC §2): exit codes, output, --help."""
import argparse
import glob
import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import time
import unittest

MESHD = None
SOURCE = None


def run(*args, env=None):
    return subprocess.run([MESHD, *args], capture_output=True, text=True, timeout=60, env=env)


class Validate(unittest.TestCase):
    def test_examples_validate(self):
        examples = sorted(glob.glob(os.path.join(SOURCE, "examples", "*.yaml")))
        self.assertGreaterEqual(len(examples), 10)
        for path in examples:
            r = run("validate", path)
            self.assertEqual(r.returncode, 0, f"{path}: {r.stderr}")
            self.assertIn("valid mesh", r.stdout)

    def test_invalid_file_exits_1_with_every_error(self):
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write("mesh: {name: m}\nvirtualNodes:\n  - name: a\n    spec: {listners: [], backends: [{virtualService: {virtualServiceName: x}}]}\n")
        try:
            r = run("validate", f.name)
            self.assertEqual(r.returncode, 1)
            lines = r.stderr.strip().splitlines()
            self.assertEqual(lines[0], f"{f.name}:4:12: virtualNodes[0].spec.listners: unknown field 'listners' (did you mean 'listeners'?)")
            self.assertTrue(lines[1].startswith(f"{f.name}:4:"))
            self.assertIn("no virtual service named 'x'", lines[1])
            self.assertEqual(lines[2], f"{f.name}: 2 errors")
            self.assertEqual(r.stdout, "")
        finally:
            os.unlink(f.name)

    def test_missing_file_exits_1(self):
        r = run("validate", "/nonexistent.yaml")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent.yaml: cannot read the mesh file", r.stderr)

    def test_usage_errors_exit_2(self):
        self.assertEqual(run("validate").returncode, 2)
        self.assertEqual(run("validate", "a", "b").returncode, 2)
        self.assertEqual(run("validate", "--bogus", "a").returncode, 2)
        self.assertEqual(run().returncode, 2)
        r = run("frobnicate")
        self.assertEqual(r.returncode, 2)
        self.assertIn("unknown command 'frobnicate'", r.stderr)


class Route(unittest.TestCase):
    def canary(self):
        return os.path.join(SOURCE, "examples", "canary.yaml")

    def test_canary_split(self):
        r = run("route", self.canary(), "--node", "frontend", "GET", "http://user-service.local/api/users")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("virtual service: user-service.local (provider: virtual router user-router)", r.stdout)
        self.assertIn("route:           canary (priority 20)", r.stdout)
        self.assertIn("user-service-v1 weight 90 ( 90.0%): static 127.0.0.1:18081", r.stdout)
        self.assertIn("user-service-v2 weight 10 ( 10.0%): static 127.0.0.1:18082", r.stdout)
        self.assertIn("2 retries, per try 2 s", r.stdout)

    def test_header_route_wins_by_priority(self):
        r = run("route", self.canary(), "--node", "frontend", "GET", "http://USER-SERVICE.local.:8080/x",
                "-H", "X-Beta-User: true")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("route:           beta (priority 10)", r.stdout)
        self.assertIn("[App Mesh default]", r.stdout)

    def test_grpc_requests(self):
        # SPEC §7 / issue 12: grpcRoute matches serviceName, methodName and metadata;
        # meshd's answers to a gRPC request are trailers-only (200 and a grpc-status).
        grpc_example = os.path.join(SOURCE, "examples", "grpc-route.yaml")
        ct = ["-H", "content-type: application/grpc"]
        url = "http://color.grpc.local:8080/color.ColorService/GetColor"
        r = run("route", grpc_example, "--node", "client", "POST", url, *ct, "-H", "x-canary: yes")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("route:           canary-method (priority 1)", r.stdout)
        self.assertIn("color-v2 weight 1", r.stdout)
        # No retryPolicy: App Mesh's default, which retries gRPC on UNAVAILABLE too.
        self.assertIn("refused-stream grpc:unavailable, backoff", r.stdout)
        self.assertIn("[App Mesh default]", r.stdout)
        r = run("route", grpc_example, "--node", "client", "POST", url, *ct)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("route:           service (priority 2)", r.stdout)
        self.assertIn("3 retries, per try 1 s, on grpc:deadline-exceeded grpc:unavailable, backoff", r.stdout)
        # Another service: no route, answered as the data path answers a gRPC client.
        r = run("route", grpc_example, "--node", "client", "POST", "http://color.grpc.local:8080/other.Svc/M", *ct)
        self.assertEqual(r.returncode, 1)
        self.assertIn("local reply:     200 grpc-status 12 no_route: none of the 2 routes", r.stdout)
        # Without a gRPC content-type a grpcRoute does not match, and the answer is HTTP's.
        r = run("route", grpc_example, "--node", "client", "POST", url)
        self.assertEqual(r.returncode, 1)
        self.assertIn("local reply:     404 no_route", r.stdout)

    def test_drop_all_denies_outside_mesh(self):
        r = run("route", self.canary(), "--node", "frontend", "GET", "http://example.com/")
        self.assertEqual(r.returncode, 1)
        self.assertIn("403 egress_denied", r.stdout)

    def test_allow_all_forwards_outside_mesh(self):
        r = run("route", os.path.join(SOURCE, "examples", "allow-all.yaml"), "--node", "app", "GET",
                "http://example.com/")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("ALLOW_ALL forwards it", r.stdout)

    def test_wrong_port_is_404(self):
        r = run("route", self.canary(), "--node", "frontend", "GET", "http://user-service.local:9999/")
        self.assertEqual(r.returncode, 1)
        self.assertIn("404 no_route: no listener on port 9999 (listeners: 8080)", r.stdout)

    def test_unknown_node_and_bad_url(self):
        r = run("route", self.canary(), "--node", "frontent", "GET", "http://user-service.local/")
        self.assertEqual(r.returncode, 1)
        self.assertIn("did you mean 'frontend'?", r.stderr)
        r = run("route", self.canary(), "--node", "frontend", "GET", "/relative")
        self.assertEqual(r.returncode, 1)
        self.assertIn("not an absolute", r.stderr)

    def test_usage(self):
        self.assertEqual(run("route", self.canary(), "GET", "http://a/").returncode, 2)  # no --node
        self.assertEqual(run("route", self.canary(), "--node").returncode, 2)
        self.assertEqual(run("route", self.canary(), "--node", "frontend", "GET", "http://a/", "-H", "bad").returncode, 2)


class Misc(unittest.TestCase):
    def test_version(self):
        r = run("version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^meshd \d+\.\d+\.\d+\n$")
        self.assertEqual(run("version", "extra").returncode, 2)

    def test_help_on_every_command(self):
        for cmd in (["--help"], ["validate", "--help"], ["route", "--help"], ["version", "--help"],
                    ["run", "--help"]):
            r = run(*cmd)
            self.assertEqual(r.returncode, 0, cmd)
            self.assertIn("usage: meshd", r.stdout, cmd)
        # Every option meshd run takes is in its help.
        r = run("run", "--help")
        for option in ("--mesh", "--node", "--gateway", "--ingress-port", "--egress-port", "--app-port",
                       "--admin", "--stats", "--workers", "--log-level", "--drain-timeout", "--set"):
            self.assertIn(option, r.stdout, option)


# ---- meshd run refuses what this build cannot serve (docs/operations.md) ----------

REFUSED = ": not supported by this build: "


def start_meshd(args, timeout=15):
    """Runs `meshd run ARGS` until it exits or prints its admin address (it is then
    serving and is killed). Returns (served, returncode, stdout, stderr)."""
    proc = subprocess.Popen([MESHD, "run", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out = b""
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.time() + timeout
    while b"listening admin" not in out and time.time() < deadline:
        if not sel.select(timeout=max(0.0, deadline - time.time())):
            break
        data = os.read(proc.stdout.fileno(), 65536)
        if not data:
            break  # it exited
        out += data
    sel.close()
    served = b"listening admin" in out
    if not served:
        try:
            proc.wait(timeout=max(1.0, deadline - time.time()))
        except subprocess.TimeoutExpired:
            served = True  # still running, whatever it printed
    if served:
        proc.kill()
    rest, err = proc.communicate(timeout=30)
    return served, proc.returncode, (out + rest).decode(), err.decode()


def run_node(path, node):
    return start_meshd(["--mesh", path, "--node", node, "--egress-port", "0", "--ingress-port", "0",
                        "--admin", "127.0.0.1:0", "--workers", "1"])


HTTP = [{"portMapping": {"port": 8080, "protocol": "http"}}]
STATIC = {"static": {"endpoints": [{"address": "127.0.0.1", "port": 1}]}}
CERT = {"file": {"certificateChain": "/nonexistent/cert.pem", "privateKey": "/nonexistent/key.pem"}}
CLIENT_TLS = {"tls": {"validation": {"trust": {"file": {"certificateChain": "/nonexistent/ca.pem"}}}}}
HC = {"healthyThreshold": 2, "unhealthyThreshold": 2, "timeoutMillis": 2000, "intervalMillis": 5000}


def node(name, listeners=None, **spec):
    spec = dict(spec)
    if listeners is not None:
        spec["listeners"] = listeners
        spec.setdefault("serviceDiscovery", STATIC)
    return {"name": name, "spec": spec}


def listener(protocol="http", port=8080, **extra):
    return {"portMapping": {"port": port, "protocol": protocol}, **extra}


def mesh_text(nodes, services=(), routers=(), routes=(), **top):
    doc = {"mesh": {"name": "m"}, "virtualNodes": list(nodes)}
    for key, items in (("virtualServices", services), ("virtualRouters", routers), ("routes", routes)):
        if items:
            doc[key] = list(items)
    doc.update(top)
    return json.dumps(doc, indent=1)  # JSON is YAML


def node_service(name, provider):
    return {"name": name, "spec": {"provider": {"virtualNode": {"virtualNodeName": provider}}}}


def router_service(name, router):
    return {"name": name, "spec": {"provider": {"virtualRouter": {"virtualRouterName": router}}}}


def client(*services, **spec):
    return node("client", backends=[{"virtualService": {"virtualServiceName": s}} for s in services], **spec)


class Refusals(unittest.TestCase):
    """`meshd run` exits 1 with one line per PATH for each part this node uses that
    this build does not serve, and serves a node that uses none of them."""

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.n = 0

    def tearDown(self):
        self.tmp.cleanup()

    def write(self, text):
        self.n += 1
        path = os.path.join(self.tmp.name, f"mesh{self.n}.yaml")
        with open(path, "w") as f:
            f.write(text)
        r = run("validate", path)
        self.assertEqual(r.returncode, 0, f"the test's mesh is invalid:\n{r.stderr}\n{text}")
        return path

    def refused(self, text, node_name, paths):
        """Asserts that `meshd run` refuses NODE with exactly PATHS; returns path -> reason."""
        path = self.write(text)
        served, rc, out, err = run_node(path, node_name)
        self.assertFalse(served, f"meshd served {node_name}; expected refusals of {paths}\n{text}")
        self.assertEqual(rc, 1, err)
        self.assertNotIn("listening", out)
        reasons = {}
        for line in err.splitlines():
            if REFUSED in line:
                self.assertTrue(line.startswith(f"{path}: "), line)
                p, reason = line[len(path) + 2:].split(REFUSED, 1)
                self.assertNotIn(p, reasons, f"{p} reported twice")
                reasons[p] = reason
        self.assertEqual(sorted(reasons), sorted(paths), err)
        return reasons

    def serves(self, text, node_name):
        path = self.write(text)
        served, rc, _, err = run_node(path, node_name)
        self.assertTrue(served, f"meshd did not serve {node_name} (exit {rc}):\n{err}")

    def test_own_listener_protocols(self):
        # http2 and grpc listeners are served (h2c downstream, HTTP/2 to the app); tcp is not.
        for protocol in ("http2", "grpc"):
            with self.subTest(protocol=protocol):
                self.serves(mesh_text([node("a", [listener(protocol)])]), "a")
        p = "virtualNodes[0].spec.listeners[0].portMapping.protocol"
        reason = self.refused(mesh_text([node("a", [listener("tcp")])]), "a", [p])[p]
        self.assertIn("issue 14", reason)
        self.assertNotIn("issue 12", reason)

    def test_own_listener_timeouts_and_pools_of_other_protocols(self):
        served = (("http2", {"http2": {"maxRequests": 10}}, {"http2": {"perRequest": {"value": 1, "unit": "s"}}}),
                  ("grpc", {"grpc": {"maxRequests": 10}}, {"grpc": {"idle": {"value": 1, "unit": "s"}}}))
        for protocol, pool, timeout in served:
            with self.subTest(protocol=protocol):
                self.serves(mesh_text([node("a", [listener(protocol, connectionPool=pool, timeout=timeout)])]), "a")
        lp = "virtualNodes[0].spec.listeners[0]"
        tcp = listener("tcp", connectionPool={"tcp": {"maxConnections": 10}},
                       timeout={"tcp": {"idle": {"value": 1, "unit": "s"}}})
        reasons = self.refused(mesh_text([node("a", [tcp])]), "a",
                               [lp + ".portMapping.protocol", lp + ".connectionPool.tcp", lp + ".timeout.tcp"])
        for p, reason in reasons.items():
            self.assertIn("issue 14", reason, p)

    def test_own_listener_tls(self):
        for mode in ("STRICT", "PERMISSIVE"):
            with self.subTest(mode=mode):
                text = mesh_text([node("a", [listener(tls={"mode": mode, "certificate": CERT})])])
                reasons = self.refused(text, "a", ["virtualNodes[0].spec.listeners[0].tls"])
                self.assertIn("issue 13", reasons["virtualNodes[0].spec.listeners[0].tls"])
        # DISABLED is plaintext: served (its certificate files are never read).
        self.serves(mesh_text([node("a", [listener(tls={"mode": "DISABLED", "certificate": CERT})])]), "a")

    def test_client_policy_tls(self):
        text = mesh_text([client("b.local", backendDefaults={"clientPolicy": CLIENT_TLS}), node("b", HTTP)],
                         [node_service("b.local", "b")])
        reasons = self.refused(text, "client", ["virtualNodes[0].spec.backendDefaults.clientPolicy.tls"])
        self.assertIn("issue 13", reasons["virtualNodes[0].spec.backendDefaults.clientPolicy.tls"])
        not_enforced = {"tls": dict(CLIENT_TLS["tls"], enforce=False)}
        text = mesh_text([node("client", backends=[{"virtualService": {"virtualServiceName": "b.local",
                                                                       "clientPolicy": not_enforced}}]),
                          node("b", HTTP)], [node_service("b.local", "b")])
        self.refused(text, "client", ["virtualNodes[0].spec.backends[0].virtualService.clientPolicy.tls"])

    def test_reached_router_listeners_and_routes(self):
        routes = {
            "http2": {"http2Route": {"match": {"prefix": "/"}, "action": {"weightedTargets": [{"virtualNode": "b", "weight": 1}]},
                                     "timeout": {"perRequest": {"value": 1, "unit": "s"}}}},
            "grpc": {"grpcRoute": {"match": {"serviceName": "color.ColorService"},
                                   "action": {"weightedTargets": [{"virtualNode": "b", "weight": 1}]},
                                   "retryPolicy": {"maxRetries": 1, "perRetryTimeout": {"value": 1, "unit": "s"},
                                                   "grpcRetryEvents": ["unavailable"]}}},
            "tcp": {"tcpRoute": {"action": {"weightedTargets": [{"virtualNode": "b", "weight": 1}]},
                                 "timeout": {"idle": {"value": 1, "unit": "s"}}}},
        }
        for protocol, spec in routes.items():
            with self.subTest(protocol=protocol):
                text = mesh_text(
                    [client("svc.local"), node("b", [listener(protocol)])], [router_service("svc.local", "r")],
                    [{"name": "r", "spec": {"listeners": [listener(protocol)]}}],
                    [{"name": "one", "virtualRouterName": "r", "spec": spec}])
                if protocol != "tcp":  # http2Route and grpcRoute, their routers and targets are served
                    self.serves(text, "client")
                    continue
                reasons = self.refused(text, "client", ["virtualRouters[0].spec.listeners[0].portMapping.protocol",
                                                        "routes[0].spec.tcpRoute",
                                                        "virtualNodes[1].spec.listeners[0].portMapping.protocol"])
                for p, reason in reasons.items():
                    self.assertIn("issue 14", reason, p)

    def test_called_listener(self):
        refused = (
            (listener("tcp"), "portMapping.protocol", "issue 14"),
            (listener(tls={"mode": "STRICT", "certificate": CERT}), "tls", "issue 13"),
            (listener(tls={"mode": "PERMISSIVE", "certificate": CERT}), "tls", "issue 13"),
        )
        for called, field, issue in refused:
            with self.subTest(field=field, listener=called):
                text = mesh_text([client("b.local"), node("b", [called])], [node_service("b.local", "b")])
                p = "virtualNodes[1].spec.listeners[0]." + field
                self.assertIn(issue, self.refused(text, "client", [p])[p])
        # What callers do serve: http2 and grpc listeners (called over HTTP/2), health checks
        # of every protocol, outlier detection, DISABLED TLS.
        outlier = {"maxServerErrors": 5, "interval": {"value": 10, "unit": "s"},
                   "baseEjectionDuration": {"value": 30, "unit": "s"}, "maxEjectionPercent": 50}
        served = (
            listener("http2"),
            listener("grpc"),
            listener("grpc", healthCheck=dict(HC, protocol="grpc")),
            listener(healthCheck=dict(HC, protocol="grpc")),
            listener(healthCheck=dict(HC, protocol="http2", path="/")),
            listener(healthCheck=dict(HC, protocol="http", path="/")),
            listener(healthCheck=dict(HC, protocol="tcp"), tls={"mode": "DISABLED", "certificate": CERT},
                     outlierDetection=outlier),
        )
        for called in served:
            with self.subTest(served=called):
                self.serves(mesh_text([client("b.local"), node("b", [called])], [node_service("b.local", "b")]),
                            "client")

    def test_only_the_parts_this_node_uses_are_checked(self):
        # b's tcp listener on 9090 is not called: the route targets its 8080.
        b = node("b", [listener("http", 8080), listener("tcp", 9090)])
        unused = node("lonely", [listener("tcp", tls={"mode": "STRICT", "certificate": CERT})],
                      backendDefaults={"clientPolicy": CLIENT_TLS})
        route = {"name": "all", "virtualRouterName": "r",
                 "spec": {"httpRoute": {"match": {"prefix": "/"},
                                        "action": {"weightedTargets": [{"virtualNode": "b", "weight": 1, "port": 8080}]}}}}
        tcp_router = {"name": "t", "spec": {"listeners": [listener("tcp")]}}  # no service of the client's
        text = mesh_text([client("svc.local"), b, unused],
                         [router_service("svc.local", "r"), router_service("db.local", "t")],
                         [{"name": "r", "spec": {"listeners": [listener("http")]}}, tcp_router], [route])
        self.serves(text, "client")
        # The same file refuses the nodes that do use them.
        self.refused(text, "lonely", ["virtualNodes[2].spec.listeners[0].portMapping.protocol",
                                      "virtualNodes[2].spec.listeners[0].tls",
                                      "virtualNodes[2].spec.backendDefaults.clientPolicy.tls"])
        self.refused(text, "b", ["virtualNodes[1].spec.listeners[1].portMapping.protocol"])
        # A virtual-node provider reaches every listener of its node.
        text = mesh_text([client("b.local"), b], [node_service("b.local", "b")])
        self.refused(text, "client", ["virtualNodes[1].spec.listeners[1].portMapping.protocol"])

    def test_virtual_gateway_is_not_run(self):
        path = os.path.join(SOURCE, "examples", "virtual-gateway.yaml")
        served, rc, out, err = start_meshd(["--mesh", path, "--gateway", "ingress-gw", "--admin", "127.0.0.1:0"])
        self.assertFalse(served, "meshd run --gateway served: update docs/operations.md and the example's note")
        self.assertEqual(rc, 1, err)  # refused with its PATH, as every feature this build does not serve
        self.assertIn(f"{path}: virtualGateways[0]: not supported by this build", err)
        self.assertNotIn("listening", out)
        served, rc, _, err = start_meshd(["--mesh", path, "--gateway", "nope", "--admin", "127.0.0.1:0"])
        self.assertEqual((served, rc), (False, 1), err)
        self.assertIn("no virtual gateway named 'nope'", err)

    def test_examples_say_what_they_need(self):
        import yaml
        examples = sorted(glob.glob(os.path.join(SOURCE, "examples", "*.yaml")))
        self.assertGreaterEqual(len(examples), 10)
        for path in examples:
            with open(path) as f:
                text = f.read()
            doc = yaml.safe_load(text)
            needs = text.startswith("# Needs ")
            # The note: the first comment lines, up to the one that points at the docs.
            note = ""
            for line in text.splitlines():
                if not needs or not line.startswith("#"):
                    break
                note += line + "\n"
                if "docs/operations.md" in line:
                    break
            issues = set()
            refused_nodes = []
            for n in doc.get("virtualNodes", []):
                served, rc, _, err = run_node(path, n["name"])
                if served:
                    continue
                self.assertEqual(rc, 1, f"{path} {n['name']}: {err}")
                self.assertIn(REFUSED, err, f"{path} {n['name']}")
                refused_nodes.append(n["name"])
                issues |= set(re.findall(r"issue \d+", err))
            with self.subTest(example=os.path.basename(path)):
                if doc.get("virtualGateways"):
                    issues.add("issue 15")
                self.assertEqual(needs, bool(issues),
                                 f"{path}: first comment {'says' if needs else 'does not say'} '# Needs'; "
                                 f"refused nodes {refused_nodes}, {sorted(issues)}")
                for issue in issues:
                    self.assertIn(f"({issue})", note, f"{path}: the first comment does not name {issue}")
                if needs:
                    self.assertIn("docs/operations.md", note)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    parser.add_argument("--source", required=True)
    args, rest = parser.parse_known_args()
    MESHD, SOURCE = args.meshd, args.source
    unittest.main(argv=[sys.argv[0], "-v", *rest])
