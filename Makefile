# The two commands of the README: `make demo` (the quickstart) and `make test` (the whole suite).
# Both create or update the local virtual environment in $(VENV) first; re-running is cheap.
# `make test` lints first (`make lint`: ruff, its version pinned in constraints/).
#
# Distributions are found by glob: core/, every packages/<name>/ and every plugins/<domain>/
# (folders starting with "_", such as plugins/_template, are not installed). A plugin whose
# dependencies cannot share this environment puts a constraints.txt in its folder: it is left
# out of $(VENV) and gets its own environment, plugins/<domain>/.venv, built and tested by
# `make test` (or `make plugin-test PLUGIN=plugins/<domain>`). `make test` also checks the core
# alone, in $(CORE_VENV) with nothing else installed (`make core-test`).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CONSTRAINTS ?= $(if $(shell command -v nvidia-smi 2>/dev/null),constraints/cuda.txt,constraints/cpu.txt)
DEMO_DIR ?= outputs/quickstart
STAMP := $(VENV)/.difforge-installed
CORE_VENV ?= .venv-core
CORE_STAMP := $(CORE_VENV)/.difforge-installed
PACKAGES := $(sort $(patsubst %/pyproject.toml,%,$(wildcard packages/*/pyproject.toml)))
PLUGINS := $(sort $(patsubst %/pyproject.toml,%,$(filter-out plugins/_%,$(wildcard plugins/*/pyproject.toml))))
OWN_ENV_PLUGINS := $(sort $(patsubst %/constraints.txt,%,$(wildcard plugins/*/constraints.txt)))
SHARED_PLUGINS := $(filter-out $(OWN_ENV_PLUGINS),$(PLUGINS))
SOURCES := $(CONSTRAINTS) core/pyproject.toml $(addsuffix /pyproject.toml,$(PACKAGES) $(SHARED_PLUGINS))

.PHONY: venv lint demo test core-test plugin-test bench clean

venv: $(STAMP)

$(STAMP): $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c $(CONSTRAINTS) -e "core[dev,tensorboard]" $(addprefix -e ,$(PACKAGES) $(SHARED_PLUGINS))
	touch $(STAMP)

demo: venv
	$(BIN)/difforge quickstart --out $(DEMO_DIR)

lint: venv
	$(BIN)/ruff check .

# pytest's testpaths (pyproject.toml) cover tests/, packages/*/tests and plugins/*/tests; the
# plugins with their own environment are ignored there and tested in it afterwards
test: venv lint
	$(BIN)/python -m pytest -q --durations=15 $(addprefix --ignore=,$(OWN_ENV_PLUGINS))
	@$(MAKE) --no-print-directory core-test
	@for plugin in $(OWN_ENV_PLUGINS); do $(MAKE) --no-print-directory plugin-test PLUGIN=$$plugin || exit 1; done

# the core installed alone (no package, no plugin) in its own environment: core/tests
$(CORE_STAMP): $(CONSTRAINTS) core/pyproject.toml
	test -x $(CORE_VENV)/bin/python || $(PYTHON) -m venv $(CORE_VENV)
	$(CORE_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CORE_VENV)/bin/python -m pip install --quiet -c $(CONSTRAINTS) -e "core[dev]"
	touch $(CORE_STAMP)

core-test: $(CORE_STAMP)
	$(CORE_VENV)/bin/python -m pytest -q -c core/pyproject.toml --rootdir core -p no:cacheprovider core/tests

# one plugin in its own environment: its constraints.txt pins what differs (another torch build,
# numpy < 2), and the core and the testkit are installed beside it from this checkout
plugin-test:
	test -n "$(PLUGIN)" || (echo "usage: make plugin-test PLUGIN=plugins/<domain>" && exit 2)
	test -x $(PLUGIN)/.venv/bin/python || $(PYTHON) -m venv $(PLUGIN)/.venv
	$(PLUGIN)/.venv/bin/python -m pip install --quiet --upgrade pip
	$(PLUGIN)/.venv/bin/python -m pip install --quiet -c $(PLUGIN)/constraints.txt -e "core[dev]" -e packages/testkit -e $(PLUGIN)
	$(PLUGIN)/.venv/bin/python -m pytest -q -c pyproject.toml --rootdir . $(PLUGIN)/tests

bench: venv
	$(BIN)/python benchmarks/train_step.py

clean:
	rm -rf $(VENV) $(CORE_VENV) outputs .pytest_cache plugins/*/.venv
