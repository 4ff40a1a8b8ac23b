# Two commands on a fresh machine: `make lab` and `make test` (see README.md).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: lab test notebooks doctor

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $@

# `python -m mmlab lab` = `jupyter lab`, plus --allow-root when run as root (Docker, cloud notebooks).
lab: $(STAMP)  ## set up, then open JupyterLab on notebooks/
	$(BIN)/python -m mmlab lab notebooks/

# Lint first (fast, fails early), then the tests.
# Two pytest workers on two cores: one thread each, or torch's threads fight over the cores.
test: $(STAMP)  ## set up, then lint, then run unit, kernel and notebook tests
	$(BIN)/ruff check .
	OMP_NUM_THREADS=1 $(BIN)/pytest -n 2 --dist loadfile --nbval --nbval-sanitize-with tests/nbval_sanitize.cfg

notebooks: $(STAMP)  ## headless: execute every notebook, HTML to build/, pass/fail table
	$(BIN)/python -m mmlab run-notebooks --out build

doctor: $(STAMP)
	$(BIN)/python -m mmlab doctor
