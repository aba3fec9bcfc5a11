# The two commands a new user needs: `make demo` and `make test`. Each creates .venv itself.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint typecheck unit native bench bench-count clean

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

# The data path compiled by mypyc, beside its sources (scripts/build_native.py, which does
# nothing when the build matches the sources). Until it runs again after an edit,
# evenflow/native.py runs the changed sources as Python.
native: $(VENV)/.installed-test
	$(BIN)/python scripts/build_native.py

demo: $(VENV)/.installed
	$(BIN)/evenflow demo

# ruff, mypy, the compiled build, the whole suite against it; then the unit tests again as
# pure Python, as evenflow runs where no C compiler is
test: $(VENV)/.installed-test
	scripts/test-tools.sh
	$(BIN)/ruff check evenflow tests bench scripts
	$(BIN)/ruff format --check evenflow tests bench scripts
	$(BIN)/mypy evenflow scripts/build_native.py
	$(MAKE) native
	$(BIN)/pytest -q
	EVENFLOW_NATIVE=0 $(BIN)/pytest -q -p no:cacheprovider tests/unit

lint: $(VENV)/.installed-test
	$(BIN)/ruff check evenflow tests bench scripts
	$(BIN)/ruff format --check evenflow tests bench scripts

typecheck: $(VENV)/.installed-test
	$(BIN)/mypy evenflow

unit: $(VENV)/.installed-test
	$(BIN)/pytest -q tests/unit

# against nginx and HAProxy on this machine; not part of `make test`
bench: $(VENV)/.installed-test native
	$(BIN)/python bench/run.py
	$(BIN)/python bench/observability.py
	$(BIN)/python bench/tls.py
	$(BIN)/python bench/tls.py --h2

# instructions per request under callgrind: exact, where the timings above are noisy
bench-count: $(VENV)/.installed-test native
	$(BIN)/python bench/instructions.py
	$(BIN)/python bench/instructions.py --protocol h2 --proxies nginx,evenflow

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache build evenflow/_native.json
	find evenflow -name '*.so' -delete
