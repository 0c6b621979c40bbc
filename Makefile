# `make run` / `make test` on a fresh machine: create .venv, install pinned deps, go.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install run test lint bench params clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: install
	$(PY) run.py

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check src tests benchmarks run.py

bench: install
	$(PY) benchmarks/scoring.py
	$(PY) benchmarks/load.py

# params.yaml is conf/ composed by DVC's Hydra support: regenerate and commit it after editing conf/
params: install
	$(PY) -m numerlab.stages params

clean:
	rm -rf $(VENV) outputs multirun .pytest_cache
