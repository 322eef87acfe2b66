# The two commands of the README: `make demo` (the quickstart) and `make test` (the whole suite).
# Both create or update the local virtual environment in $(VENV) first; re-running is cheap.
# `make test` lints first (`make lint`: ruff, its version pinned in constraints/).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),constraints/cuda.txt,constraints/cpu.txt)
DEMO_DIR ?= outputs/quickstart
STAMP := $(VENV)/.difforge-installed
SOURCES := $(CONSTRAINTS) core/pyproject.toml packages/testkit/pyproject.toml packages/zoo/pyproject.toml plugins/audio/pyproject.toml

.PHONY: venv lint demo test bench clean

venv: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e "core[dev,tensorboard]" -e packages/testkit -e packages/zoo -e plugins/audio
	touch $(STAMP)

demo: venv
	$(BIN)/difforge quickstart --out $(DEMO_DIR)

lint: venv
	$(BIN)/ruff check .

test: venv lint
	$(BIN)/python -m pytest -q

bench: venv
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) outputs .pytest_cache
