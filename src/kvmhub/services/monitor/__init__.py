"""Watching VMs and the host: `kvmhub top`, events, Prometheus metrics."""
