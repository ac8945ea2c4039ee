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

# the server: kvmhub's REST API as this host's service, left running
scripts/server.sh start
echo
echo "the same VM through the kvmhub server's API:"
.venv/bin/python - <<'PY'
import http.client, json, socket

class UnixConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect("/run/kvmhub/kvmhub.sock")

conn = UnixConnection("localhost", timeout=30)
conn.request("GET", "/api/v1/vms/demo")
vm = json.load(conn.getresponse())
print(f"  GET /api/v1/vms/demo -> {vm['name']}: {vm['state']}, {vm['vcpus']} vCPU, {vm['memory_mib']} MiB, "
      f"addresses {', '.join(vm['ips']) or '-'}")
PY
echo
echo "kvmhub server running: API on unix socket /run/kvmhub/kvmhub.sock (root and group kvmhub),"
echo "  OpenAPI at /openapi.json, docs at /docs; stop it with scripts/server.sh stop"
