# The two commands (see README): `make demo` runs the fleet with simulated
# units; `make test` runs every test. Both set up what is missing first.
VENV := .venv
PY := $(VENV)/bin/python
UNITS ?= 100

.PHONY: setup demo test lint bench clean

setup:
	@scripts/setup.sh

demo: setup
	$(PY) -m devharness.demo --units $(UNITS)

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: setup lint
	$(PY) -m pytest

clean:
	rm -rf var build .pytest_cache .mypy_cache .ruff_cache
