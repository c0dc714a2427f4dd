# semlab: `make help` lists the targets.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.semlab-installed
PROFILE ?= cpu
DOMAIN  ?= both

.PHONY: help venv test test-fast report data bench lab clean-venv

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

venv: $(STAMP)  ## create or update .venv with semlab and its pinned dependencies

test: $(STAMP)  ## run the test suite (creates .venv if needed)
	$(PY) -m pytest -n 2 -q

test-fast: $(STAMP)  ## the tests without the slow ones (notebooks)
	$(PY) -m pytest -n 2 -q -m "not slow"

data: $(STAMP)  ## build the embedded simulated datasets for PROFILE (default cpu)
	$(VENV)/bin/semlab make-data --profile $(PROFILE)

report: $(STAMP)  ## the main job: build data, run all notebooks (PROFILE=cpu, DOMAIN=both), write reports/index.html
	$(VENV)/bin/semlab make-data --profile $(PROFILE) --quiet
	$(VENV)/bin/semlab run --profile $(PROFILE) --domain $(DOMAIN)

bench: $(STAMP)  ## print throughput of the simulator as JSON lines
	$(VENV)/bin/semlab bench simulate --preset ic-metal --size 256 --n 500 --json

lab: $(STAMP)  ## JupyterLab on the notebooks: semlab kernel registered, 127.0.0.1 only, token auth
	$(VENV)/bin/semlab lab

clean-venv:  ## remove .venv
	rm -rf $(VENV)
