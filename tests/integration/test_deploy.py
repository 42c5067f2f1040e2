#!/usr/bin/env python3
"""No container engine runs here: check that the deployment examples parse, that every
meshd flag and environment variable they use exists, that the mesh they carry
validates, and that the paths they mount are the ones meshd is told to read."""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import yaml

MESHD = SOURCE = None
ENV_VARS = {"APPMESH_RESOURCE_ARN", "APPMESH_RESOURCE_NAME", "APPMESH_VIRTUAL_NODE_NAME", "MESHD_MESH_FILE"}


def run_help():
    return subprocess.run([MESHD, "run", "--help"], capture_output=True, text=True, check=True).stdout


def check_args(test, args):
    help_text = run_help()
    for a in args:
        if a.startswith("--"):
            test.assertIn(a, help_text, f"{a} is not a flag of meshd run")
    mesh = args[args.index("--mesh") + 1]
    return mesh


class Deploy(unittest.TestCase):
    def test_dockerfile(self):
        with open(os.path.join(SOURCE, "examples/deploy/Dockerfile")) as f:
            text = f.read()
        self.assertIn("bash scripts/install-deps.sh", text)
        self.assertTrue(os.path.exists(os.path.join(SOURCE, "scripts/install-deps.sh")))
        self.assertTrue(os.path.exists(os.path.join(SOURCE, "scripts/build.sh")))
        self.assertIn("build/proxy/meshd", text)
        self.assertRegex(text, r"(?m)^USER 1337$")
        health = re.search(r"HEALTHCHECK .*CMD (\[.*\])", text)
        self.assertIsNotNone(health)
        self.assertEqual(json.loads(health.group(1))[:2], ["meshd", "status"])
        cmd = json.loads(re.search(r"(?m)^CMD (\[.*\])$", text).group(1))
        check_args(self, cmd)

    def test_ecs_task_definition(self):
        with open(os.path.join(SOURCE, "examples/deploy/ecs-task-definition.json")) as f:
            task = json.load(f)
        containers = {c["name"]: c for c in task["containerDefinitions"]}
        meshd = containers["meshd"]
        self.assertEqual(meshd["user"], "1337")
        mesh_path = check_args(self, meshd["command"])
        mounts = [m["containerPath"] for m in meshd["mountPoints"]]
        self.assertTrue(any(mesh_path.startswith(p + "/") for p in mounts), (mesh_path, mounts))
        for e in meshd["environment"]:
            self.assertIn(e["name"], ENV_VARS)
        self.assertEqual(meshd["healthCheck"]["command"][1:3], ["meshd", "status"])
        app = containers["app"]
        env = {e["name"]: e["value"] for e in app["environment"]}
        egress = meshd["command"][meshd["command"].index("--egress-port") + 1]
        self.assertEqual(env["HTTP_PROXY"], f"http://127.0.0.1:{egress}")
        self.assertEqual(app["dependsOn"], [{"containerName": "meshd", "condition": "HEALTHY"}])

    def test_kubernetes_manifest(self):
        with open(os.path.join(SOURCE, "examples/deploy/kubernetes.yaml")) as f:
            docs = list(yaml.safe_load_all(f))
        config_map = next(d for d in docs if d["kind"] == "ConfigMap")
        deployment = next(d for d in docs if d["kind"] == "Deployment")
        pod = deployment["spec"]["template"]["spec"]
        sidecar = pod["initContainers"][0]
        self.assertEqual(sidecar["restartPolicy"], "Always")  # a native sidecar
        mesh_path = check_args(self, sidecar["args"])
        for e in sidecar["env"]:
            self.assertIn(e["name"], ENV_VARS)
        mount = sidecar["volumeMounts"][0]
        self.assertNotIn("subPath", mount)  # a subPath ConfigMap mount never updates
        self.assertEqual(os.path.dirname(mesh_path), mount["mountPath"])
        volume = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        self.assertEqual(volume["configMap"]["name"], config_map["metadata"]["name"])
        stats_port = int(sidecar["args"][sidecar["args"].index("--stats") + 1].rsplit(":", 1)[1])
        self.assertEqual(sidecar["readinessProbe"]["httpGet"]["port"], stats_port)
        app = pod["containers"][0]
        env = {e["name"]: e["value"] for e in app["env"]}
        self.assertEqual(env["HTTP_PROXY"], "http://127.0.0.1:15001")
        # The mesh in the ConfigMap is valid, and names the node the sidecar serves.
        with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
            f.write(config_map["data"][os.path.basename(mesh_path)])
        try:
            r = subprocess.run([MESHD, "validate", f.name], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stderr)
            node = sidecar["env"][0]["value"].rsplit("/", 1)[1]
            r = subprocess.run([MESHD, "route", f.name, "--node", node, "GET",
                                "http://user-service.default.svc.cluster.local/"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        finally:
            os.unlink(f.name)


class Demo(unittest.TestCase):
    def test_readme_first_command_runs_the_canary_demo(self):
        # scripts/demo.sh --once with the binary under test (no install, no build): two
        # demo apps and a sidecar on the example canary mesh, on the demo's fixed
        # loopback ports; 200 requests split about 90/10, the header route to v2.
        env = dict(os.environ, MESHD_BINARY=os.path.abspath(MESHD))
        r = subprocess.run(["bash", os.path.join(SOURCE, "scripts/demo.sh"), "--once"], cwd=SOURCE, env=env,
                           capture_output=True, text=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        split = {m.group(1): int(m.group(2)) for m in re.finditer(r"^  (user-service v\d): (\d+) ", r.stdout, re.M)}
        self.assertEqual(sum(split.values()), 200, r.stdout)
        self.assertTrue(160 <= split.get("user-service v1", 0) <= 195, split)  # 90 % ± 3.4 sigma
        self.assertIn("with x-beta-user: true (route 'beta'): user-service v2", r.stdout)
        self.assertIn("curl http://127.0.0.1:9901/metrics", r.stdout)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--meshd", required=True)
    parser.add_argument("--source", required=True)
    args, rest = parser.parse_known_args()
    MESHD, SOURCE = args.meshd, args.source
    unittest.main(argv=[sys.argv[0], "-v", *rest])
