# Two entry points, both self-contained on a fresh machine (Python >= 3.11, no torch installed):
#   make demo   set up .venv and solve the embedded default problem
#   make test   set up .venv and run the test suite
# TORCH_SPEC picks the torch build; the default is the CPU wheel. On a CUDA machine use e.g.
#   make test TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cu128"
VENV ?= .venv
PYTHON ?= python3
TORCH_SPEC ?= torch==2.13.0
PY := $(VENV)/bin/python

$(VENV)/.installed: pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[test]"
	touch $@

.PHONY: demo test
demo: $(VENV)/.installed
	$(VENV)/bin/slactl solve

test: $(VENV)/.installed
	$(PY) -m pytest -q
