# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
# `make run` installs the runtime lock only; test, lint, bench and demo add the dev lock.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/pip install --quiet --disable-pip-version-check
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev
LOCK_FLAGS := --quiet --generate-hashes --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links

.PHONY: install install-dev run demo test test-cluster test-fast bench bench-quick bench-import services broker lint lock clean

install: $(STAMP)

install-dev: $(DEV_STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) --require-hashes -r requirements.lock
	$(PIP) --no-deps -e .
	touch $(STAMP)

# The dev lock pins the runtime packages to the same versions (compiled against requirements.lock).
$(DEV_STAMP): $(STAMP) requirements-dev.lock
	$(PIP) --require-hashes -r requirements-dev.lock
	touch $(DEV_STAMP)

# Start the local RabbitMQ (and PostgreSQL for the tests) if installed but stopped; `services`
# also installs Debian's chromium for the browser tests when it is missing.
broker:
	@scripts/ensure-services.sh rabbitmq

services:
	@scripts/ensure-services.sh rabbitmq postgresql chromium

run: install broker
	@scripts/run-local.sh

demo: install-dev
	@$(BIN)/python scripts/demo.py

# Everything but the cluster tests (pyproject.toml leaves them out by default).
test: install-dev services
	$(BIN)/python -m pytest

# A three-node RabbitMQ cluster (and a PostgreSQL standby) started on this machine, nodes
# killed and frozen while a morning flows (docs/reliability.md); a few minutes.
test-cluster: install-dev services
	$(BIN)/python -m pytest -m cluster

test-fast: install-dev services
	$(BIN)/python -m pytest -x -q -m "not postgres and not cluster"

# Benchmarks on the real broker and databases (a fresh vhost per run); figures in bench/results.md.
bench: install-dev services
	$(BIN)/python -m bench

bench-quick: install-dev services
	$(BIN)/python -m bench --quick

# A 1,500-pupil school's roster and a term of marks through `python -m triage import-csv`.
bench-import: install-dev services
	$(BIN)/python -m bench.import_csv

# Style, types (mypy strict, settings in pyproject.toml) and the dependency rules (import-linter).
lint: install-dev
	$(BIN)/ruff check services tests scripts bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# Re-pin after changing dependencies in pyproject.toml; existing pins are kept unless they must move.
lock: install-dev
	$(BIN)/pip-compile $(LOCK_FLAGS) -o requirements.lock pyproject.toml
	$(BIN)/pip-compile $(LOCK_FLAGS) --extra dev -c requirements.lock -o requirements-dev.lock pyproject.toml

clean:
	rm -rf $(VENV) var .pytest_cache
