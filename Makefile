# The two commands of the README, and the steps they are made of.
# `make demo` runs the main job on a local LocalStack; `make test` runs every test.

PYTHON ?= $(shell local-runtime/find-python 3.12)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: test lint unit

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[dev]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/cfn-lint template.yaml

unit: $(STAMP)
	$(BIN)/pytest tests-local/unit tests-local/integration

test: lint unit
