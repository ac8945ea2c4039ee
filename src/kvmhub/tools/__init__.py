"""Tools kvmhub runs on the host: qemu-img, the NoCloud seed ISO, the tiny appliance builder."""
