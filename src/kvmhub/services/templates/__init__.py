"""Warm templates: a running VM's memory saved and its disk frozen, so new VMs are restored instead of booted.

:mod:`store` keeps the templates on the host, :mod:`make` makes one, :mod:`warm` makes a VM from one and
:mod:`identity` gives a restored guest its own name, machine-id, host keys, entropy and address.
"""
