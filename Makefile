# pushgw — the two commands a user needs: `make run` and `make test`.
SHELL := /bin/bash
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean bench bench-store bench-delivery bench-provider bench-bridge bench-faults bench-harness

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Run the gateway on the embedded default (SQLite under ./data, in-process bus).
run: $(STAMP)
	$(BIN)/pushgw serve --data-dir ./data

## Install PostgreSQL/Redis if missing, start throwaway instances, run pytest, tear down.
test: $(STAMP)
	scripts/with-test-services.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check . || true
	$(BIN)/mypy

bench-store: $(STAMP)
	scripts/with-test-services.sh $(BIN)/python -m loadtest store
	# The REST batch shape: 500 notifications per accept_many, 8 group-commit flushers.
	scripts/with-test-services.sh $(BIN)/python -m loadtest store --backends postgres --window 0 --batch 500 --flushers 8

bench-delivery: $(STAMP)
	scripts/with-test-services.sh $(BIN)/python -m loadtest delivery

bench-provider: $(STAMP)
	command -v h2load >/dev/null || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nghttp2-client)
	scripts/with-test-services.sh $(BIN)/python -m loadtest provider
	scripts/with-test-services.sh $(BIN)/python -m loadtest rest

bench-bridge: $(STAMP)
	scripts/with-test-services.sh $(BIN)/python -m loadtest bridge

## The fault and abuse suites at larger sizes (PUSHGW_FAULT_SCALE multiplies every size;
## PUSHGW_FAULT_<NAME> sets one, see tests/fault/sizes.py). Prints one FAULT line per scenario.
FAULT_SCALE ?= 4
bench-faults: $(STAMP)
	rm -f .fault-report.txt
	PUSHGW_FAULT_SCALE=$(FAULT_SCALE) PUSHGW_FAULT_REPORT=$(CURDIR)/.fault-report.txt \
		scripts/with-test-services.sh $(BIN)/python -m pytest tests/fault tests/abuse -q
	@echo "--- fault scenarios at scale $(FAULT_SCALE) ---"; cat .fault-report.txt

## The load-test harness: connect, online, offline-drain, fan-out, mixed; Mosquitto side by side;
## JSON + HTML under loadtest/results/, figures into BENCHMARKS.md.  Larger: HARNESS_ARGS="--size large".
bench-harness: $(STAMP)
	scripts/with-test-services.sh $(BIN)/python -m loadtest harness --update-benchmarks $(HARNESS_ARGS)

bench: bench-harness bench-store bench-delivery bench-provider bench-bridge

clean:
	rm -rf $(VENV) data .pytest_cache .mypy_cache .ruff_cache
