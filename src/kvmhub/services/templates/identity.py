"""What runs in the guest, through its agent, around a warm template's save and each restore.

Before the save (:func:`prepare`): DHCP clients stop and addresses go (they are the source VM's), the seed disk is
unmounted (each new VM gets its own under it) and the page cache is dropped (a smaller state file). After a restore
(:func:`give_identity`): the clock (it stood still since the save), hostname, machine-id, host random pool (bytes
from the host written into ``/dev/urandom``), SSH host keys made anew (RSA and ECDSA ones in the background), the
new VM's SSH keys, DHCP on its new NIC (through the client the guest runs: udhcpc, systemd-networkd, NetworkManager
or dhclient), and a check that the host answers from the new address (ping, else a TCP connection to its DNS); then
the markers kvmhub's VMs print (``KVMHUB-BOOTED``, ``KVMHUB-READY``) on its console.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable

from kvmhub.errors import OperationFailed
from kvmhub.hv.agent import Agent, ExecStatus
from kvmhub.services.vm.guest_exec import run_shell

PREPARE = r"""
for p in /run/udhcpc.*.pid /run/dhclient*.pid; do [ -s "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
killall udhcpc dhclient 2>/dev/null || pkill -x 'udhcpc|dhclient' 2>/dev/null
for d in /sys/class/net/*; do [ "${d##*/}" = lo ] || ip -4 addr flush dev "${d##*/}" 2>/dev/null; done
rm -f /run/kvmhub/lease.* /run/kvmhub/static.* 2>/dev/null
umount /run/seed 2>/dev/null
sync
echo 3 >/proc/sys/vm/drop_caches 2>/dev/null
exit 0
"""

IDENTITY = r"""
name=$1 machine_id=$2 entropy=$3 mac=$4 host_ip=$5 user=$6 keys=$7 now=$8
# each program started costs ~10 ms under TCG: what the shell can do itself, it does
date -u -s "@$now" >/dev/null 2>&1
marker() { printf '\nKVMHUB-%s\n' "$*" >/dev/console 2>/dev/null; }
fail() { echo "$*" >&2; exit 1; }
printf "$entropy" >/dev/urandom 2>/dev/null
{ echo "$name" >/proc/sys/kernel/hostname; } 2>/dev/null || hostname "$name" 2>/dev/null
echo "$name" >/etc/hostname
hosts="" named=""
if [ -f /etc/hosts ]; then
	while IFS= read -r line || [ -n "$line" ]; do
		case $line in 127.0.1.1*) line="127.0.1.1	$name" named=1 ;; esac
		hosts="$hosts$line
"
	done </etc/hosts
fi
[ -n "$named" ] || hosts="${hosts}127.0.1.1	$name
"
printf '%s' "$hosts" >/etc/hosts
printf '%s\n' "$machine_id" >/etc/machine-id
[ -e /var/lib/dbus/machine-id ] && printf '%s\n' "$machine_id" >/var/lib/dbus/machine-id
for key in /etc/dropbear/dropbear_*_host_key; do
	[ -e "$key" ] && rm -f /etc/dropbear/dropbear_*_host_key
	break
done
if [ -d /etc/ssh ] && command -v ssh-keygen >/dev/null 2>&1; then
	rm -f /etc/ssh/ssh_host_*_key /etc/ssh/ssh_host_*_key.pub
	# an ed25519 key now (milliseconds); RSA and ECDSA take seconds under TCG: they follow in the background and
	# sshd offers them from its next start (a reload re-executes sshd, refusing connections for a moment after
	# the VM was said ready)
	ssh-keygen -q -t ed25519 -N "" -f /etc/ssh/ssh_host_ed25519_key </dev/null >/dev/null 2>&1
	if command -v systemctl >/dev/null 2>&1; then
		systemctl try-restart ssh sshd 2>/dev/null
		ssh-keygen -A </dev/null >/dev/null 2>&1 &
	else
		ssh-keygen -A >/dev/null 2>&1
	fi
fi
killall dropbear 2>/dev/null
if [ -n "$keys" ]; then
	home=""
	while IFS=: read -r login _ _ _ _ dir _; do
		[ "$login" = "$user" ] && { home=$dir; break; }
	done </etc/passwd
	if [ -n "$home" ]; then
		mkdir -p "$home/.ssh" && printf '%s\n' "$keys" >>"$home/.ssh/authorized_keys"
		chmod go-rwx "$home/.ssh" "$home/.ssh/authorized_keys"
		[ "$user" = root ] || chown -R "$user" "$home/.ssh" 2>/dev/null
	fi
fi
marker "BOOTED (restored from a template as $name)"
# nap [MICROSECONDS]: 0.1 s unless told (sleep 1 where neither usleep nor a fractional sleep exists)
nap() { usleep "${1:-100000}" 2>/dev/null || sleep "$(printf '0.%06d' "${1:-100000}")" 2>/dev/null || sleep 1; }
# whether the host answers from the new address: ping, else a TCP connection to its DNS (dnsmasq) through bash
answers() {
	if command -v ping >/dev/null 2>&1; then
		ping -c 1 -W 1 "$1" >/dev/null 2>&1
	elif command -v bash >/dev/null 2>&1; then
		timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/53"' "$1" 2>/dev/null
	fi
}
if [ -n "$mac" ]; then
	find_iface() {
		iface=""
		for d in /sys/class/net/*; do
			read -r address <"$d/address" 2>/dev/null && [ "$address" = "$mac" ] && iface=${d##*/}
		done
	}
	i=0
	find_iface
	while [ -z "$iface" ] && [ $i -lt 500 ]; do
		nap 20000
		i=$((i + 1))
		find_iface
	done
	[ -n "$iface" ] || fail "no NIC with MAC $mac appeared in the guest"
	# the NIC is plugged as this script runs: udev may still be renaming it (eth0 -> ens5); let it finish
	if command -v udevadm >/dev/null 2>&1; then
		udevadm settle --timeout=10 2>/dev/null
		find_iface
		[ -n "$iface" ] || fail "the NIC with MAC $mac went away in the guest"
	fi
	ip link set "$iface" up
	# the new NIC is named after its slot, so the image's own network configuration does not know it
	if [ -x /etc/kvmhub/udhcpc ]; then
		udhcpc -i "$iface" -x "hostname:$name" -s /etc/kvmhub/udhcpc -p "/run/udhcpc.$iface.pid" -t 15 -T 1 -A 3 -n -S \
			</dev/null >/dev/null 2>&1 || fail "no DHCP lease on $iface ($mac)"
	elif systemctl is-active --quiet systemd-networkd 2>/dev/null; then
		mkdir -p /run/systemd/network
		unit="/run/systemd/network/10-kvmhub-$iface.network"
		printf '[Match]\nMACAddress=%s\n\n[Network]\nDHCP=ipv4\n' "$mac" >"$unit"
		networkctl reload >/dev/null 2>&1 && networkctl reconfigure "$iface" >/dev/null 2>&1 \
			|| fail "systemd-networkd did not take $iface ($mac)"
	elif systemctl is-active --quiet NetworkManager 2>/dev/null; then
		nmcli device connect "$iface" >/dev/null 2>&1 || fail "NetworkManager did not connect $iface ($mac)"
	elif command -v dhclient >/dev/null 2>&1; then
		dhclient -1 -pf "/run/dhclient.$iface.pid" "$iface" </dev/null >/dev/null 2>&1 \
			|| fail "no DHCP lease on $iface ($mac)"
	else
		fail "no DHCP client (udhcpc, systemd-networkd, NetworkManager or dhclient) in the guest for $iface"
	fi
	i=0
	until ip -4 addr show dev "$iface" 2>/dev/null | grep -q 'inet '; do
		[ $i -lt 300 ] || fail "$iface ($mac) got no IPv4 address"
		nap
		i=$((i + 1))
	done
	if [ -n "$host_ip" ]; then
		i=0
		until answers "$host_ip"; do
			[ $i -lt 10 ] || fail "the host ($host_ip) does not answer from $iface's new address"
			i=$((i + 1))
			nap
		done
	fi
fi
marker READY
"""

IDENTITY_TIMEOUT = 90.0
IDENTITY_POLL = 0.03  # the script takes ~0.3 s under TCG: a coarser poll would add up to its own length
AGENT_WAIT = 30.0


def _run(ag: Agent, what: str, script: str, *args: str, timeout: float, poll: float = 0.25,
         agent_wait: float = 0.0, started: Callable[[], None] | None = None) -> ExecStatus:
    status = run_shell(ag, script, *args, timeout=timeout, poll=poll, agent_wait=agent_wait, started=started)
    if status is None:
        raise OperationFailed(f"cannot {what} in VM {ag.name}: the guest has no /bin/sh",
                              cause="warm templates need a guest with a shell and its agent")
    if status.shell_code != 0:
        said = (status.err or status.out).decode(errors="replace").strip()
        raise OperationFailed(f"cannot {what} in VM {ag.name}", cause=said or f"exit status {status.shell_code}")
    return status


def prepare(ag: Agent) -> None:
    """Make the guest forget what belongs to its current VM before its memory is saved."""
    _run(ag, "prepare the guest for a template", PREPARE, timeout=60.0)


def give_identity(ag: Agent, *, name: str, uuid: str, mac: str | None, host_ip: str | None, user: str | None,
                  keys: list[str], started: Callable[[], None] | None = None) -> None:
    """Give a just-restored guest VM ``name``'s identity and address; returns once the host answered a ping from
    that address (or at once without a NIC). ``started`` runs as soon as the script runs in the guest (which
    waits for the NIC with ``mac`` to appear). Raises OperationFailed with the guest's words when a step fails."""
    entropy = "".join(f"\\{b:03o}" for b in os.urandom(64))  # octal escapes: printf writes the bytes itself
    _run(ag, "give the guest its identity", IDENTITY, name, uuid.replace("-", ""), entropy, (mac or "").lower(),
         host_ip or "", user or "root", "\n".join(keys), str(round(time.time())), timeout=IDENTITY_TIMEOUT,
         poll=IDENTITY_POLL, agent_wait=AGENT_WAIT,  # libvirt reconnects to the agent a moment after the restore
         started=started)
