"""kvmhub as a client of a kvmhub server: remotes, the HTTP transport, and following operations."""
