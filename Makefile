# The two commands a new user needs: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit bench bench-count clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# installed markers: re-run pip only when pyproject.toml changes
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/evenflow demo

test: $(VENV)/.installed-test
	scripts/test-tools.sh
	$(BIN)/ruff check evenflow tests bench
	$(BIN)/ruff format --check evenflow tests bench
	$(BIN)/mypy evenflow
	$(BIN)/pytest -q

lint: $(VENV)/.installed-test
	$(BIN)/ruff check evenflow tests bench
	$(BIN)/ruff format --check evenflow tests bench

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy evenflow

unit: $(VENV)/.installed-test
	$(BIN)/pytest -q tests/unit

# against nginx and HAProxy on this machine; not part of `make test`
bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py
	$(BIN)/python bench/tls.py

# instructions per request under callgrind: exact, where the timings above are noisy
bench-count: $(VENV)/.installed-test
	$(BIN)/python bench/instructions.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
