#!/usr/bin/env bash
# The main job: a real VM named `demo` booted on an isolated network, shown alive.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
K=.venv/bin/kvmhub
NET=kvmhub-demo

$K host setup --no-network
$K image build-tiny
$K net show "$NET" >/dev/null 2>&1 || $K net create "$NET" --mode isolated
if $K show demo >/dev/null 2>&1; then
  $K rm demo
fi
$K create demo --image tiny --network "$NET" --wait --timeout 300
echo
$K ls
echo
echo "demo's IP: $($K ip demo)"
echo
echo "last lines of demo's serial console:"
$K console demo --log | tail -n 15
