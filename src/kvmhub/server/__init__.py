"""kvmhub's server: the services behind a versioned REST API (FastAPI), long work as journalled operations."""
