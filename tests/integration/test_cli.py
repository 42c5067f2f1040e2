#!/usr/bin/env python3
"""Black-box tests of the meshd command line (SPEC §2): exit codes, output, --help."""
import argparse
import glob
import os
import subprocess
import sys
import tempfile
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
        for cmd in (["--help"], ["validate", "--help"], ["route", "--help"], ["version", "--help"]):
            r = run(*cmd)
            self.assertEqual(r.returncode, 0, cmd)
            self.assertIn("usage: meshd", r.stdout, cmd)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    parser.add_argument("--source", required=True)
    args, rest = parser.parse_known_args()
    MESHD, SOURCE = args.meshd, args.source
    unittest.main(argv=[sys.argv[0], "-v", *rest])
