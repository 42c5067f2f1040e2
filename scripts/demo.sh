#!/usr/bin/env bash
# The README's first command: installs what is missing, builds meshd and runs it on
# the example canary mesh (examples/canary.yaml): validates the file, then shows where
# the frontend's sidecar sends a plain request and a beta user's request.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
dir=$(bash scripts/build.sh release | tail -n 1)
meshd="$dir/proxy/meshd"
mesh=examples/canary.yaml
echo
echo "\$ meshd validate $mesh"
"$meshd" validate "$mesh"
echo
echo "\$ meshd route $mesh --node frontend GET http://user-service.local/users/42"
"$meshd" route "$mesh" --node frontend GET http://user-service.local/users/42
echo
echo "\$ meshd route $mesh --node frontend GET http://user-service.local/users/42 -H 'x-beta-user: true'"
"$meshd" route "$mesh" --node frontend GET http://user-service.local/users/42 -H 'x-beta-user: true'
echo
echo "\$ meshd route $mesh --node frontend GET http://example.com/"
"$meshd" route "$mesh" --node frontend GET http://example.com/ || true
