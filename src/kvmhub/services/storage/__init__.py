"""Storage: pools, volumes, images, disks on VMs, encrypted disks, NVRAM files, who uses what."""
