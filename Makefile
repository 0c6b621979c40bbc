# `make run` / `make test` on a fresh machine: create .venv, install pinned deps, go.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test

.PHONY: install install-test run test test-fast lint bench params clean

install: $(STAMP)

# The tests also run sweeps on a local Ray head and compose the SLURM launcher config:
# the `ray` and `slurm` extras, and the Ray launcher without its stale cloudpickle<3 pin.
install-test: $(TEST_STAMP)

$(TEST_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev,ray,slurm,mlflow,tensorboard]'
	$(PY) -m pip install --quiet --no-deps -c constraints.txt hydra-ray-launcher
	touch $(TEST_STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

run: install
	$(PY) run.py

# Every test. CI (.ci/run) and the README run this one.
test: install-test
	$(PY) -m pytest -q

# The edit loop: all but the `slow` tier (tests that start `python run.py`, dvc or git, run
# Ray, or fit for more than a few seconds; see tests/conftest.py).
test-fast: install-test
	$(PY) -m pytest -q -m "not slow"

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
