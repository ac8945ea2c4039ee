"""The service layer: kvmhub's verbs, one package per resource, shared by the CLI (local mode) and the API."""
