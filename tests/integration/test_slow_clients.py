#!/usr/bin/env python3
"""Slow and abusive clients (issue 6): slowhttptest (Debian) in slowloris mode
(headers dribbled) and slow-body mode against meshd with short deadlines. meshd must
close the slow connections itself, keep serving others during the attack, and end
with its descriptors back at the baseline."""
import argparse
import re
import shutil
import subprocess
import sys
import time
import unittest

import harness
from harness import Meshd, Upstream, http_request

MESH = """
mesh: {{name: m}}
virtualNodes:
  - name: client
    spec: {{backends: [{{virtualService: {{virtualServiceName: svc.local}}}}]}}
  - name: up
    spec:
      listeners: [{{portMapping: {{port: 8080, protocol: http}}}}]
      serviceDiscovery: {{static: {{endpoints: [{{address: 127.0.0.1, port: {port}}}]}}}}
virtualServices:
  - {{name: svc.local, spec: {{provider: {{virtualNode: {{virtualNodeName: up}}}}}}}}
"""


class SlowClients(unittest.TestCase):
    def run_attack(self, mode_args):
        tool = shutil.which("slowhttptest")
        self.assertIsNotNone(tool, "slowhttptest is missing: scripts/install-deps.sh installs it")
        up = Upstream("up")
        m = Meshd(MESH.format(port=up.port), "client", extra_args=[
            "--set", "request_header_timeout=2s", "--set", "downstream_idle_timeout=2s",
            "--set", "upstream_idle_timeout_mesh=1s"])
        try:
            baseline = m.open_fds()
            url = f"http://127.0.0.1:{m.port('egress')}/"
            attack = subprocess.Popen([tool, "-c", "200", "-i", "1", "-r", "100", "-l", "8", "-x", "10", "-p", "2",
                                       "-u", url, *mode_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                      text=True)
            time.sleep(4)
            # Others are served during the attack.
            for _ in range(5):
                s, _, _ = http_request("127.0.0.1", m.port("egress"), "GET", "/", headers={"Host": "svc.local"})
                self.assertEqual(s, 200)
            out, _ = attack.communicate(timeout=60)
            out = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", out)  # slowhttptest colours its report
            # The attack ends because meshd closed every slow connection itself (its
            # deadlines are 2 s; the attack would otherwise last 8 s).
            self.assertIn("No open connections left", out, out[-2000:])
            ended = re.findall(r"Test ended on (\d+)th second", out)
            self.assertTrue(ended and int(ended[-1]) < 8, out[-2000:])
            time.sleep(3)
            self.assertLessEqual(m.open_fds(), baseline + 1)
        finally:
            up.close()
            m.stop_and_check(self)

    def test_slowloris_headers(self):
        self.run_attack(["-H"])

    def test_slow_body(self):
        self.run_attack(["-B", "-t", "POST"])


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    args, rest = parser.parse_known_args()
    harness.MESHD = args.meshd
    unittest.main(argv=[sys.argv[0], "-v", *rest])
