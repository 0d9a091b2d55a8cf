# The two commands a newcomer needs: `make run` and `make test`. Both build .venv from scratch when it
# is missing or when pyproject.toml changed, so nothing has to be installed by hand first.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Set REQUIRE_ENGINE=1 (CI does) to make tests that need a container engine fail instead of skip.
REQUIRE_ENGINE ?=
PYTEST_ARGS ?=

.PHONY: run test lint bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(VENV)/.installed-run

run: $(VENV)/.installed-run
	$(BIN)/dockyard up

test: $(VENV)/.installed-dev
	DOCKYARD_REQUIRE_ENGINE=$(REQUIRE_ENGINE) $(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff over code, tests and benchmarks; mypy over src/ (both configured in pyproject.toml). CI runs it.
lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy src

# Benchmarks need a container engine (podman) and print ratios against a direct baseline.
bench: $(VENV)/.installed-dev
	$(BIN)/python bench/activation.py
	$(BIN)/python bench/gateway.py
	$(BIN)/python bench/first-invoke.py

clean:
	rm -rf $(VENV) .cache .pytest_cache
