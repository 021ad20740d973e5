# Two commands on a fresh machine: `make demo` and `make test`.
# The environment is built from requirements.lock (all versions pinned) with uv,
# which is itself installed from PyPI into .tools/ so nothing is needed by hand.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export UV_PYTHON_DOWNLOADS := never
export DBT_SEND_ANONYMOUS_USAGE_STATS := false
export RUNTIME__DLTHUB_TELEMETRY := false

# Dagster keeps its runs and settings here (make demo, make ui); the tests use tmp.
DAGSTER_HOME ?= $(abspath .dagster_home)
DEMO := $(abspath .demo)

.PHONY: env test lint manifest demo ui dagster-home webserver daemon deploy-home sandbox lock bench clean

env: $(STAMP)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

# --compile-bytecode: the machines set PYTHONDONTWRITEBYTECODE=1, so without it every
# process (each dbt, dagster, sandbox and bench child of the tests) compiled what it imported
# from source: `import dagster, dlt, dbt.cli.main` took 5.2 CPU-s, 2.9 with the bytecode.
$(STAMP): requirements.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --compile-bytecode --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

## Re-pin every dependency after editing pyproject.toml.
lock: | $(UV)
	$(UV) pip compile --quiet pyproject.toml --group dev --all-extras --python-version 3.11 -o requirements.lock

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint manifest browser
	$(VENV)/bin/pytest -q --durations=30

## Debian's chromium and chromium-driver, for the cancel page's browser test (tests/e2e):
## installed with apt-get when missing and this is root, else the command is printed and
## the test skips with the same advice. About 17 s here (apt-get update included).
.PHONY: browser
browser:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		echo "installing chromium and chromium-driver (apt-get)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null; \
	else \
		echo "browser: /usr/bin/chromium or /usr/bin/chromedriver is missing; the cancel page's browser test will be skipped."; \
		echo "  install them with: sudo apt-get install -y chromium chromium-driver"; \
	fi

## dbt_project/target/manifest.json, which the Dagster definitions load (@dbt_assets).
manifest: $(STAMP)
	$(VENV)/bin/dbt parse --quiet --project-dir dbt_project --profiles-dir dbt_project

## A scenario served as local Stripe/Recurly/Chargebee, loaded, modelled and validated
## once through Dagster (runs kept in $(DAGSTER_HOME)); prints the figures.
demo: $(STAMP) manifest dagster-home
	DAGSTER_HOME="$(DAGSTER_HOME)" $(VENV)/bin/retention demo --workdir $(DEMO)

## The Dagster UI on the demo's warehouse and runs: http://127.0.0.1:3000
## (`dagster dev` says it is superseded by `dg dev`, which is not installed: filtered.)
ui: $(STAMP) manifest dagster-home
	PYTHONWARNINGS='ignore:Function `dev_command` is superseded:FutureWarning' \
	PATH="$(abspath $(VENV))/bin:$$PATH" DAGSTER_HOME="$(DAGSTER_HOME)" \
	RETENTION_DUCKDB_PATH="$${RETENTION_DUCKDB_PATH:-$(DEMO)/warehouse.duckdb}" \
	SOURCES__EXIT_SESSIONS__FOLDER="$${SOURCES__EXIT_SESSIONS__FOLDER:-$(DEMO)/drop}" \
	DLT_DATA_DIR="$${DLT_DATA_DIR:-$(DEMO)/dlt}" \
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

## The instance settings (the duckdb pool limited to 1) in a new DAGSTER_HOME.
dagster-home:
	mkdir -p "$(DAGSTER_HOME)"
	test -f "$(DAGSTER_HOME)/dagster.yaml" || cp orchestration/dagster.yaml "$(DAGSTER_HOME)/dagster.yaml"

## Production Dagster (deploy/README.md): the instance's settings (deploy/dagster.yaml:
## storage in Postgres from DAGSTER_PG_*, run monitoring) in DEPLOY_HOME, refreshed at
## each start; not DAGSTER_HOME, which keeps `make ui`'s local settings. The pipeline's
## variables come from the shell, as for the systemd units.
DEPLOY_HOME ?= $(abspath .dagster_deploy)
WEBSERVER_HOST ?= 127.0.0.1
WEBSERVER_PORT ?= 3000

deploy-home:
	install -D -m 0644 deploy/dagster.yaml "$(DEPLOY_HOME)/dagster.yaml"

## The UI and GraphQL API, a long-running process (the daemon launches the runs).
webserver: $(STAMP) manifest deploy-home
	PATH="$(abspath $(VENV))/bin:$$PATH" DAGSTER_HOME="$(DEPLOY_HOME)" \
	$(VENV)/bin/dagster-webserver -w workspace.yaml -h $(WEBSERVER_HOST) -p $(WEBSERVER_PORT)

## The sensor, schedules, run queue and run monitoring, a long-running process.
daemon: $(STAMP) manifest deploy-home
	PATH="$(abspath $(VENV))/bin:$$PATH" DAGSTER_HOME="$(DEPLOY_HOME)" \
	$(VENV)/bin/dagster-daemon run -w workspace.yaml

## Figures, not tests: each script prints what it measured.
bench: $(STAMP) manifest
	$(PY) bench/bench_generate.py
	$(PY) bench/bench_sandbox_listing.py
	$(PY) bench/bench_extract.py --only throughput --only rss --customers 20000 --rss-customers 5000
	$(PY) bench/bench_exit_sessions.py
	$(PY) bench/bench_marts.py --sizes 1,100000  # the 1M and 10M points by hand (README "Benchmarks")
	$(PY) bench/bench_writebacks.py
	$(PY) bench/bench_fastpath.py
	$(PY) bench/bench_collector.py
	$(PY) bench/bench_webhooks.py
	$(PY) bench/bench_cancel_page.py

clean:
	rm -rf $(VENV) $(TOOLS) .demo .dagster_home .dagster_deploy .pytest_cache
