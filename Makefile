# Two commands for a newcomer: `make run` and `make test`. Everything else is a helper.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: install run demo test test-fast bench bench-quick services broker lint clean

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "Python 3.11 is required ($(PYTHON) not found)"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	touch $(STAMP)

# Start the local RabbitMQ (and PostgreSQL for the tests) if installed but stopped.
broker:
	@scripts/ensure-services.sh rabbitmq

services:
	@scripts/ensure-services.sh rabbitmq postgresql

run: install broker
	@scripts/run-local.sh

demo: install
	@$(BIN)/python scripts/demo.py

test: install services
	$(BIN)/python -m pytest

test-fast: install services
	$(BIN)/python -m pytest -x -q -m "not postgres"

# Benchmarks on the real broker and databases (a fresh vhost per run); figures in bench/results.md.
bench: install services
	$(BIN)/python -m bench

bench-quick: install services
	$(BIN)/python -m bench --quick

lint: install
	$(BIN)/python -m ruff check services tests

clean:
	rm -rf $(VENV) var .pytest_cache
