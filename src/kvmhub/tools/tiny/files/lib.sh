# kvmhub tiny appliance: helpers shared by the boot scripts (sourced, not run).
export PATH=/sbin:/bin:/usr/sbin:/usr/bin
export HOME=/root

# The leading newline keeps a marker at the start of a line even after a shell prompt.
marker() {
	printf '\nKVMHUB-%s\n' "$*" >/dev/console
}

say() {
	printf 'kvmhub: %s\n' "$*" >/dev/console
}
