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

.PHONY: env test lint demo sandbox lock bench clean

env: $(STAMP)

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet uv==$(UV_VERSION)

$(STAMP): requirements.lock pyproject.toml | $(UV)
	$(UV) venv --quiet --allow-existing --python $(PYTHON) $(VENV)
	$(UV) pip sync --quiet --python $(PY) requirements.lock
	$(UV) pip install --quiet --python $(PY) --no-deps -e .
	touch $(STAMP)

## Re-pin every dependency after editing pyproject.toml.
lock: | $(UV)
	$(UV) pip compile --quiet pyproject.toml --group dev --python-version 3.11 -o requirements.lock

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: $(STAMP) lint
	$(VENV)/bin/pytest -q

## Until the pipeline issues land, the demo generates a scenario and serves it.
demo: $(STAMP)
	mkdir -p .demo
	$(VENV)/bin/retention sandbox generate --customers 3000 --seed 7 --out .demo/scenario.json
	$(VENV)/bin/retention sandbox serve --scenario .demo/scenario.json

bench: $(STAMP)
	$(PY) bench/bench_generate.py
	$(PY) bench/bench_sandbox_listing.py

clean:
	rm -rf $(VENV) $(TOOLS) .demo .pytest_cache
