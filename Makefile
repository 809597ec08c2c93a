# Lookbook — the two commands: `make run` (serve the embedded default) and `make test`.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
REDIS_PORT ?= 6379

.PHONY: run test check fmt install bench clean ensure-redis ensure-postgres ensure-chromium ensure-promtool

## The same install script as the Dockerfile's (torch from pip's configuration here, the CPU
## index in the image).
$(STAMP): pyproject.toml scripts/install.sh
	bash scripts/install.sh --venv $(VENV) --python $(PYTHON) --extras dev
	touch $(STAMP)

install: $(STAMP)

## Serve the embedded default on http://$(HOST):$(PORT): synthetic retailer, in-process cache,
## trained on the spot when no bundle exists yet.
run: $(STAMP)
	$(BIN)/lookbook serve --embedded --host $(HOST) --port $(PORT)

## Start a local redis-server when none answers and one is installed (tests skip Redis otherwise,
## except in CI where they fail).
ensure-redis:
	@if command -v redis-cli >/dev/null 2>&1 && redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1; then \
		echo "redis: answering on 127.0.0.1:$(REDIS_PORT)"; \
	elif command -v redis-server >/dev/null 2>&1; then \
		echo "redis: starting redis-server on 127.0.0.1:$(REDIS_PORT)"; \
		redis-server --daemonize yes --bind 127.0.0.1 --port $(REDIS_PORT) --save "" --appendonly no; \
		for i in $$(seq 1 50); do redis-cli -p $(REDIS_PORT) ping >/dev/null 2>&1 && break; sleep 0.1; done; \
	else \
		echo "redis: no server and redis-server not installed; Redis tests will skip"; \
	fi

## Start the installed PostgreSQL cluster when none answers on 127.0.0.1 (the PostgreSQL tests
## create and drop a database of their own; they skip without a server, except in CI).
ensure-postgres:
	@if ! command -v pg_isready >/dev/null 2>&1; then \
		echo "postgres: not installed; PostgreSQL tests will skip"; \
	elif pg_isready -q -h 127.0.0.1; then \
		echo "postgres: answering on 127.0.0.1"; \
	elif [ -d /etc/postgresql ] && command -v pg_ctlcluster >/dev/null 2>&1; then \
		echo "postgres: starting cluster $$(ls /etc/postgresql) main"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
		for i in $$(seq 1 100); do pg_isready -q -h 127.0.0.1 && break; sleep 0.1; done; \
		pg_isready -h 127.0.0.1; \
	else \
		echo "postgres: no server answers and no cluster is installed; PostgreSQL tests will skip"; \
	fi


## Install Debian's Chromium and chromedriver for the kiosk page's browser tests when either is
## missing (sudo only when not root).
ensure-chromium:
	@if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ]; then \
		echo "chromium: /usr/bin/chromium and /usr/bin/chromedriver present"; \
	else \
		SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
		echo "chromium: installing chromium and chromium-driver"; \
		$$SUDO apt-get update && \
		$$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y chromium chromium-driver; \
	fi

test: $(STAMP) ensure-redis ensure-postgres ensure-chromium
	$(BIN)/python -m pytest -q

## promtool (Debian's prometheus package) checks and unit-tests the alert rules in `make check`.
ensure-promtool:
	@command -v promtool >/dev/null 2>&1 || { \
		sudo=$$([ "$$(id -u)" = 0 ] || echo sudo); \
		$$sudo apt-get update && $$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y prometheus; }

check: $(STAMP) ensure-promtool
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python scripts/check_deploy.py

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(STAMP)
	$(BIN)/python benchmarks/serve_latency.py
	$(BIN)/python benchmarks/train_scale.py

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
