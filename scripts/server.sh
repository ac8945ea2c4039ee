#!/usr/bin/env bash
# Run `kvmhub serve` as this host's service: a systemd unit when systemd runs the machine, else a background
# process (pid in /run/kvmhub/server.pid, log in /var/log/kvmhub/server.log). `scripts/server.sh stop` stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
K="$PWD/.venv/bin/kvmhub"
SOCK=/run/kvmhub/kvmhub.sock
PIDFILE=/run/kvmhub/server.pid
LOG=/var/log/kvmhub/server.log

answers() {  # does the server accept connections on its socket?
  "$PWD/.venv/bin/python" -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])' \
    "$SOCK" 2>/dev/null
}

getent group kvmhub >/dev/null || groupadd --system kvmhub  # who may use the socket besides root
mkdir -p /run/kvmhub /var/log/kvmhub

case "${1:-start}" in
stop)
  if [ -d /run/systemd/system ]; then
    systemctl stop kvmhub 2>/dev/null || true
  elif [ -f "$PIDFILE" ]; then
    kill "$(cat "$PIDFILE")" 2>/dev/null || true
    rm -f "$PIDFILE"
  fi
  exit 0
  ;;
start) ;;
*) echo "usage: $0 [start|stop]" >&2; exit 2 ;;
esac

if [ -d /run/systemd/system ]; then
  cat >/etc/systemd/system/kvmhub.service <<UNIT
[Unit]
Description=kvmhub server (REST API on $SOCK)
After=libvirtd.service
Wants=libvirtd.service

[Service]
ExecStart=$K serve --socket $SOCK
Restart=on-failure

[Install]
WantedBy=multi-user.target
UNIT
  systemctl daemon-reload
  systemctl enable --now kvmhub
elif ! answers; then
  nohup "$K" serve --socket "$SOCK" >>"$LOG" 2>&1 </dev/null &
  echo $! >"$PIDFILE"
fi
for _ in $(seq 1 150); do
  answers && exit 0
  sleep 0.2
done
echo "server: kvmhub serve did not come up on $SOCK; see $LOG" >&2
exit 1
