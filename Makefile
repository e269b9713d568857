# e-SSC developer commands. `make help` lists them.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
PROJECTS := shared services/gateway services/identity services/issuance services/settlement tools/devkit
PYPROJECTS := $(addsuffix /pyproject.toml,$(PROJECTS))
# ESSC_VENV=/path/to/venv reuses a virtualenv made elsewhere (another checkout's `make venv`):
# its interpreter and installed dependencies, nothing installed into it; this checkout's own
# packages go first on PYTHONPATH, so this checkout's code is the code that runs.
ifdef ESSC_VENV
VENV := $(ESSC_VENV)
STAMP :=
empty :=
export PYTHONPATH := $(subst $(empty) $(empty),:,$(abspath $(PROJECTS)))$(if $(PYTHONPATH),:$(PYTHONPATH))
else
VENV := .venv
STAMP := $(VENV)/.installed
endif
PY := $(VENV)/bin/python
# Tests use this PostgreSQL when it is reachable (money paths and concurrency run only there).
ESSC_TEST_POSTGRES_URL ?= postgresql://postgres@127.0.0.1:5432/test
export ESSC_TEST_POSTGRES_URL

.DEFAULT_GOAL := help
.PHONY: help venv run test check lint typecheck format bench clean k8s-render fuzz soak

help: ## list the commands
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

ifndef ESSC_VENV
$(STAMP): $(PYPROJECTS) requirements-dev.txt constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt --config-settings editable_mode=compat $(addprefix -e ,$(PROJECTS)) -r requirements-dev.txt
	@touch $(STAMP)
endif

venv: $(STAMP) ## create .venv and install every package (editable) and the dev tools

REPLICAS ?= 1
run: $(STAMP) ## migrate, seed demo data and run the services on 127.0.0.1:8000-8003 (ESSC_PORT_BASE=N: N..N+3; REPLICAS=2: two of each, on PostgreSQL+Redis)
	$(PY) -m devkit.run --replicas $(REPLICAS)

test: $(STAMP) ## run the whole test suite (PostgreSQL tests need $$ESSC_TEST_POSTGRES_URL reachable)
	$(PY) -m pytest $(PYTEST_ARGS)

FUZZ_EXAMPLES ?= 40
FUZZ_SEED ?= 20261127
fuzz: $(STAMP) ## schemathesis, longer: more examples, every kind against every operation; report in test-output/fuzz/
	ESSC_FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) ESSC_FUZZ_SEED=$(FUZZ_SEED) ESSC_FUZZ_STATEFUL_STEPS=20 \
	ESSC_FUZZ_UNEXPECTED_METHODS=GET,PUT,POST,DELETE,OPTIONS,PATCH,TRACE ESSC_FUZZ_CROSS_KINDS=1 $(PY) -m pytest tests/fuzz -k "schemathesis or harness" --timeout=3600 \
	--junitxml=test-output/fuzz/junit.xml $(PYTEST_ARGS)
	@echo "reports: test-output/fuzz/*.json"

lint: $(STAMP) ## ruff
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP) ## apply ruff's fixes and formatting
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

typecheck: $(STAMP) ## mypy --strict over every package
	$(VENV)/bin/mypy

check: lint typecheck test ## lint, types and tests

bench: $(STAMP) ## benchmarks: print a table and write bench-results/*.json (needs wrk; installs it with apt if missing)
	@command -v wrk >/dev/null || (command -v apt-get >/dev/null && (apt-get install -y -qq wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)))
	$(PY) -m devkit.bench $(BENCH_ARGS)

SOAK_SECONDS ?= 600
SOAK_SEED ?= 20261127
SOAK_WORKERS ?= 8
soak: $(STAMP) ## soak a real cluster (PostgreSQL + Redis) for SOAK_SECONDS, check the books and RSS; test-output/soak/
	$(PY) -m devkit.soak --seconds $(SOAK_SECONDS) --seed $(SOAK_SEED) --workers $(SOAK_WORKERS) $(SOAK_ARGS)

OVERLAY ?= dev
k8s-render: ## print the Kubernetes manifests of OVERLAY (dev or prod; needs kubectl)
	kubectl kustomize deploy/k8s/overlays/$(OVERLAY)

clean: ## remove the virtualenv and local data (var/)
	rm -rf .venv var .pytest_cache .mypy_cache .ruff_cache bench-results test-output
