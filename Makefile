# The two commands: `make run` (the function end to end on a local stack) and `make test`.
# Both create and reuse .venv at the repo root; nothing else needs installing by hand.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Lambda runs python3.13; the code also runs on 3.11+, the development default.
SAM_REGION ?= us-east-1

.DEFAULT_GOAL := help
.PHONY: help install run test lint format typecheck template unit integration build clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(INSTALLED): requirements-dev.txt layers/dependencies/requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found %s)" % sys.version.split()[0])'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $@

install: $(INSTALLED) ## Create .venv and install the pinned tooling

run: $(INSTALLED) ## Run every sample event through the handler on a local stack (moto + Glider emulator)
	$(BIN)/python -m local.run $(RUN_ARGS)

test: lint typecheck template unit integration ## Lint, type-check, template checks and the whole test suite

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(INSTALLED) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(INSTALLED)
	$(BIN)/mypy

template: $(INSTALLED) ## cfn-lint and sam validate --lint on template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region $(SAM_REGION)

unit: $(INSTALLED)
	$(BIN)/pytest tests/unit

integration: $(INSTALLED)
	$(BIN)/pytest tests/integration

build: $(INSTALLED) ## sam build (needs python3.13 on PATH)
	$(BIN)/sam build --template template.yaml

clean: ## Remove .venv and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
