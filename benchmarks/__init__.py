"""kvmhub benchmarks: run each as `.venv/bin/python benchmarks/bench_<area>.py` from the repo root."""
