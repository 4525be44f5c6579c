# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install demo test dev bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/usage-report demo

test: install
	$(BIN)/pytest -q

dev: install
	$(BIN)/dagster dev -w workspace.yaml

bench: install
	$(BIN)/python bench/ingest.py

clean:
	rm -rf demo_data warehouse bench_data test-artifacts
	find site_output -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
