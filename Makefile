# Two commands: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint format clean mutate

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip >/dev/null
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

# finished runs in runs/demo are reused (a run is redone only when its identity changed)
demo: $(STAMP)
	$(BIN)/longtail compare --out runs/demo

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/ruff format --check src tests benchmarks scripts

test: lint
	$(BIN)/python -m pytest

# Mutation testing of the core modules (not part of `make test`): MODULES="weights.py" to pick,
# SAMPLE=110 mutants per module spread evenly through the file (SAMPLE= for every mutant).
MODULES ?= sampling/plans.py weights.py metrics.py losses.py distribution.py
SAMPLE ?= 110
mutate: $(STAMP)
	$(BIN)/python scripts/mutate.py $(MODULES) $(if $(SAMPLE),--sample $(SAMPLE),)

format: $(STAMP)
	$(BIN)/ruff check --fix src tests benchmarks scripts
	$(BIN)/ruff format src tests benchmarks scripts

clean:
	rm -rf $(VENV) runs build src/*.egg-info .pytest_cache .ruff_cache .mutants
