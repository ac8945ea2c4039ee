"""The kvmhub command line."""
