"""The service layer: kvmhub's verbs, shared by the CLI (local mode) and the API."""
