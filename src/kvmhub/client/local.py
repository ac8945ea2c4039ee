"""Where the local kvmhub server listens. No imports: the CLI's fast path reads it."""

DEFAULT_SOCKET = "/run/kvmhub/kvmhub.sock"
