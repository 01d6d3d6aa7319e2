# Tongxin — the two commands are `make up` (run the platform on the local stack)
# and `make test` (run the whole test suite). Both set everything up on a fresh machine.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: up test lint fmt demo kafka-jars system-deps bench faults clean

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

kafka-jars: $(STAMP)
	$(BIN)/tongxin devstack fetch-kafka

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
test: $(STAMP) kafka-jars system-deps
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
