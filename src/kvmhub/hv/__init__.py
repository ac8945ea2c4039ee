"""The libvirt layer: the only package that imports `libvirt`."""

from kvmhub.hv.connection import DEFAULT_URI, Hypervisor, host_files_here, host_root, is_local_uri, resolve_uri

__all__ = ["DEFAULT_URI", "Hypervisor", "host_files_here", "host_root", "is_local_uri", "resolve_uri"]
