# The user's front door. `make help` lists the targets; README.md says how long each takes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# Extra pip arguments, e.g. PIP_ARGS="--extra-index-url https://download.pytorch.org/whl/cu126"
# for a CUDA 12.6 build of the pinned torch on a cluster whose driver predates CUDA 13.
PIP_ARGS ?=
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help install test test-all demo clean

help: ## list the targets
	@grep -E '^[a-z][a-z0-9-]*:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 14

install: $(STAMP) ## create .venv and install the suite with its pinned dependencies (once)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]' $(PIP_ARGS)
	@touch $(STAMP)

test: install ## run the fast test tier (CPU)
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-all: install ## run every test, the slow end-to-end ones included
	$(PY) -m pytest $(PYTEST_ARGS)

demo: install ## train the embedded default config (dense ResNet-50 x0.25 on digits) into results/
	$(PY) -m core run

clean: ## remove the venv and the demo's run folders (results of real runs are kept)
	rm -rf $(VENV) results/runs/demo *.egg-info
