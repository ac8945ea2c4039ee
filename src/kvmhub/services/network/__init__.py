"""Networks: virtual networks, address leases, NICs, port forwards, VM firewalls, host bridges."""
