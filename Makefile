# The two commands of the README: `make run` and `make test`. Everything else supports them.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HTMX := static/vendor/htmx.min.js
NODE_MODULES := node_modules/.package-lock.json
export PUSHWIRE_DATABASE_URL ?= sqlite+aiosqlite:///./pushwire.db

.PHONY: run test lint install services browser migrate demo bench soak screenshots clean

$(STAMP): pyproject.toml setup.py
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP) $(HTMX)

# Node packages from the npm registry, pinned in package.json and package-lock.json: htmx, copied into
# static/vendor/ (not committed), where the editable install serves it from (a built package fetches its
# own, setup.py); and, as devDependencies, the real Pusher libraries tests/pusher drives (pusher-js,
# pusher). Reinstalled when either file changes or node_modules is gone (npm writes the stamp file).
$(NODE_MODULES): package.json package-lock.json
	npm install --no-audit --no-fund --silent
	touch $(NODE_MODULES)

$(HTMX): $(NODE_MODULES)
	mkdir -p static/vendor
	cp node_modules/htmx.org/dist/htmx.min.js $(HTMX)

migrate: install
	$(BIN)/pushwire database upgrade

demo: migrate
	$(BIN)/pushwire demo

run: demo
	@echo "Console: http://127.0.0.1:8000/console  ·  API docs: http://127.0.0.1:8000/schema"
	PUSHWIRE_TRACE_SAMPLE_RATIO=$${PUSHWIRE_TRACE_SAMPLE_RATIO:-1.0} $(BIN)/pushwire run --host 127.0.0.1 --port 8000

services: $(STAMP)
	VENV=$(VENV) scripts/services.sh

# Browser tests drive Debian's chromium through Playwright (Playwright cannot download browsers here).
browser:
	@command -v chromium >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

# The gate before any test: lint, format and strict types (config in pyproject.toml).
lint: install
	$(BIN)/ruff check pushwire tests bench scripts setup.py
	$(BIN)/ruff format --check pushwire tests bench scripts setup.py
	$(BIN)/mypy

test: lint services browser
	$(BIN)/python -m pytest

bench: install services
	$(BIN)/python -m bench

# Connection churn against a real server: 30 min on the single node, then 10 min on the full stack;
# fails when memory grows (docs/operations.md#memory-under-churn). Shorter: make soak SOAK="--stack full --duration 300".
soak: install services
	$(BIN)/python -m bench.soak $(SOAK)

# Console pictures for the README (docs/img/), taken from a live single-node server.
screenshots: install browser
	$(BIN)/python scripts/screenshots.py

clean:
	rm -rf $(VENV) node_modules static/vendor pushwire.db pushwire.secret build dist *.egg-info
