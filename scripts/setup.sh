#!/usr/bin/env bash
# One idempotent set-up for a Debian 12 host (run as root): packages, virtualenv, /dev/kvm, daemons.
# Usage: scripts/setup.sh [--dev]   (--dev adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

DEV=0
[ "${1:-}" = "--dev" ] && DEV=1

# Every package the code, tests and benchmarks run or load (qemu-block-extra: QEMU's iscsi/nfs/curl disks).
PACKAGES=(
  qemu-system-x86 qemu-utils qemu-guest-agent
  libvirt-daemon-system libvirt-clients libvirt-dev pkg-config gcc
  dnsmasq-base dnsmasq-utils iproute2 iputils-ping util-linux
  busybox-static cpio kmod syslinux syslinux-common mtools dosfstools
  python3 python3-venv python3-dev libxml2-utils virtinst ovmf
  osinfo-db libosinfo-bin isolinux xorriso xz-utils
  libvirt-daemon-driver-storage-iscsi-direct libvirt-daemon-driver-storage-rbd
  tgt nfs-ganesha nfs-ganesha-vfs rpcbind nfs-common
  qemu-block-extra swtpm swtpm-tools
  iptables mount lvm2 openssh-client
  libguestfs-tools python3-guestfs linux-image-cloud-amd64
  debootstrap fdisk e2fsprogs
)

if [ "$(id -u)" != 0 ]; then
  echo "setup: run as root (it installs packages and starts libvirtd)" >&2
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# The virtualenv: libvirt-python is built against the installed libvirt (libvirt-dev + pkg-config).
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
stamp=.venv/.kvmhub-installed
want="$(sha256sum pyproject.toml | cut -c1-16)-$DEV"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  .venv/bin/pip install -q --upgrade pip
  libvirt_version="$(pkg-config --modversion libvirt)"
  if [ "$DEV" = 1 ]; then
    .venv/bin/pip install -q "libvirt-python==${libvirt_version}" -e ".[dev]"
  else
    .venv/bin/pip install -q "libvirt-python==${libvirt_version}" -e .
  fi
  echo "$want" > "$stamp"
fi

# libguestfs's Python bindings are Debian's (python3-guestfs), linked into the venv when its Python can load them;
# linux-image-cloud-amd64 is only read from /boot by supermin, to build the appliance libguestfs boots.
site="$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
for f in /usr/lib/python3/dist-packages/guestfs.py \
         /usr/lib/python3/dist-packages/libguestfsmod.cpython-"$(.venv/bin/python -c 'import sys; print(f"{sys.version_info[0]}{sys.version_info[1]}")')"-*.so; do
  if [ -e "$f" ]; then
    ln -sfn "$f" "$site/$(basename "$f")"
  else
    echo "setup: $f missing: image customize and disk edit will say libguestfs is unavailable" >&2
  fi
done

# /dev/kvm as udev leaves it on ordinary hosts; without it libvirtd re-probes QEMU on every start.
if [ -e /dev/kvm ]; then
  getent group kvm >/dev/null || groupadd --system kvm
  chgrp kvm /dev/kvm
  chmod 0660 /dev/kvm
fi

# Daemons: systemd when it runs the machine, else started by hand.
answers() {  # does a daemon accept connections on this unix socket?
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.settimeout(3); s.connect(sys.argv[1])' "$1" \
    2>/dev/null
}
start_daemon() {
  local name=$1 sock=$2
  if [ -d /run/systemd/system ]; then
    systemctl start "$name"
  elif ! answers "$sock"; then
    rm -f "$sock"
    "$name" -d
  fi
  for _ in $(seq 1 150); do
    answers "$sock" && return 0
    sleep 0.2
  done
  echo "setup: $name did not come up (no $sock)" >&2
  return 1
}
start_daemon virtlogd /run/libvirt/virtlogd-sock
start_daemon libvirtd /run/libvirt/libvirt-sock
echo "setup: ready (.venv/bin/kvmhub)"
