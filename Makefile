# Tongxin — the two commands are `make up` (run the platform on the local stack)
# and `make test` (run the whole test suite). Both set everything up on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

LOCKS  := requirements
# uv writes the locks (`make lock`), from a venv of its own: not a dependency of the project
LOCK_VENV  := .cache/lock-venv
UV_VERSION := 0.13.10

.PHONY: up test lint fmt demo kafka-jars system-deps bench faults clean lock

## Every dependency from the hashed locks (pip refuses anything whose hash differs): pip and the
## build backend first, then the tests' lock (the runtime, the `local` stack's broker and
## database, the `dev` tools), then the project itself, editable, adding nothing.
$(STAMP): pyproject.toml $(LOCKS)/build.lock $(LOCKS)/dev.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCKS)/build.lock
	$(BIN)/python -m pip install -q --require-hashes -r $(LOCKS)/dev.lock
	$(BIN)/python -m pip install -q --no-deps --no-build-isolation -e .
	@touch $(STAMP)

## Rewrite the locks from pyproject.toml: dev.lock (runtime + `dev` + `local`, what make installs),
## prod.lock (runtime only, what deploy/Dockerfile installs, the same versions) and build.lock.
## Pins already in a lock are kept; move them with UPGRADE=--upgrade or
## UPGRADE='--upgrade-package fastapi'.
lock:
	@test -x $(LOCK_VENV)/bin/uv || { $(PYTHON) -m venv $(LOCK_VENV) \
		&& $(LOCK_VENV)/bin/pip install -q uv==$(UV_VERSION); }
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/uv pip compile -q $(UPGRADE) \
		--generate-hashes --python-version 3.11 pyproject.toml --extra dev --extra local \
		-o $(LOCKS)/dev.lock
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/uv pip compile -q \
		--generate-hashes --python-version 3.11 pyproject.toml -c $(LOCKS)/dev.lock \
		-o $(LOCKS)/prod.lock
	UV_CUSTOM_COMPILE_COMMAND="make lock" $(LOCK_VENV)/bin/uv pip compile -q $(UPGRADE) \
		--generate-hashes --python-version 3.11 $(LOCKS)/build.in -o $(LOCKS)/build.lock

kafka-jars: $(STAMP)
	$(BIN)/tongxin devstack fetch-kafka

## The OpenID Provider the sign-in tests run (tests/oidc: the certified oidc-provider, from
## npm with its lock); again only when the lock changes.
OIDC_STAMP := tests/oidc/node_modules/.installed
$(OIDC_STAMP): tests/oidc/package.json tests/oidc/package-lock.json
	cd tests/oidc && npm ci --no-audit --no-fund --silent
	@touch $(OIDC_STAMP)

## Debian packages the tests use when missing: promtool (prometheus) and chromium.
system-deps:
	bash tools/ci/system-deps.sh

## Run the platform: broker + database + the four services, logs streamed; Ctrl-C stops all.
up: $(STAMP)
	$(BIN)/tongxin up

demo: $(STAMP)
	$(BIN)/tongxin demo

## The whole test suite: lint, unit, integration, e2e, then the fault scenarios with a short load
## (real Apache Kafka + SecantusDB).
test: $(STAMP) kafka-jars system-deps $(OIDC_STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	TONGXIN_BROKER=$${TONGXIN_BROKER:-kafka} $(BIN)/pytest
	TONGXIN_BROKER=$${TONGXIN_BROKER:-kafka} $(BIN)/pytest tests/faults -m faults -p no:cacheprovider

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

## Benchmark: load over HTTP against an own stack, with the raw broker/database baseline.
bench: $(STAMP) kafka-jars
	$(BIN)/python -m bench $(BENCH_ARGS)

## Fault injection under load (kill, restart, poison, rebalance, SIGTERM) with a report table.
faults: $(STAMP) kafka-jars
	TONGXIN_BROKER=kafka TONGXIN_FAULTS_RATE=$${TONGXIN_FAULTS_RATE:-20} \
	TONGXIN_FAULTS_DURATION=$${TONGXIN_FAULTS_DURATION:-60} $(BIN)/pytest tests/faults -m faults -p no:cacheprovider

clean:
	rm -rf $(VENV) .cache var
