"""Snapshots and backups of VMs."""
