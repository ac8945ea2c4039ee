"""VMs: create, lifecycle, remove, clone, export, installers, cloud-init seeds, readiness, limits, OS."""
