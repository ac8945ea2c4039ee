# kvmhub: `make run` boots a demo VM; `make test` runs the whole suite. Both set up what is missing.
.PHONY: run test setup lint unit integration bench clean

VENV := .venv
PY := $(VENV)/bin/python

run:
	scripts/demo.sh

setup:
	scripts/setup.sh --dev

# real guests first, one module at a time (they share a test host and the 2 cores); then the unit tests, which
# mostly wait on sockets and subprocesses, three at a time
test: setup
	$(PY) -m pytest tests/integration
	$(PY) -m pytest -n 3 tests/unit

unit: setup
	$(PY) -m pytest -n 3 tests/unit

integration: setup
	$(PY) -m pytest tests/integration

# ruff also refuses imports inside functions below the CLI; test_layers refuses import cycles and upward imports
lint: setup
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/mypy
	$(PY) -m pytest -q -p no:cacheprovider tests/unit/test_layers.py

bench: setup
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
