# Hilo's developer commands. `make help` lists them. Every target installs what it needs first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
AWS_PORT ?= 4566

.DEFAULT_GOAL := help
.PHONY: help dev test lint typecheck unit bench lock format build deploy clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml uv.lock
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Hilo needs Python 3.11 or newer (found %s)" % sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --disable-pip-version-check "uv>=0.5,<1"
	@UV_PYTHON_DOWNLOADS=never $(BIN)/uv sync --frozen --extra dev --inexact --quiet --compile-bytecode
	@touch $@

dev: $(VENV)/.installed ## start the whole stack locally (moto, HTTP API on :3000, AWS on :4566)
	$(BIN)/hilo dev --port $(PORT) --aws-port $(AWS_PORT)

test: $(VENV)/.installed ## lint, type-check and run every test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/pytest

unit: $(VENV)/.installed ## run only the tests that do not start a local stack
	$(BIN)/pytest -m "not stack"

format: $(VENV)/.installed ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(VENV)/.installed ## run the benchmarks (not part of the tests)
	$(BIN)/python -m tests.benchmarks.cold_start

lock: $(VENV)/.installed ## re-resolve uv.lock and re-export the Lambda dependencies layer
	$(BIN)/uv lock
	$(BIN)/uv export --frozen --no-dev --no-emit-project --no-hashes --format requirements-txt \
		-o infra/layers/dependencies/requirements.txt --quiet

build: ## sam build (needs the AWS SAM CLI)
	sam build --template template.yaml

deploy: build ## sam deploy --guided (needs the AWS SAM CLI and AWS credentials)
	sam deploy --guided

clean: ## remove the virtual environment and local state
	rm -rf $(VENV) .hilo .aws-sam .pytest_cache .mypy_cache .ruff_cache
