# Two commands: `make run` runs every homework, `make test` runs the test suite.
# Each creates .venv and installs requirements.txt on first use (or when requirements.txt changes).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test clean

run: $(VENV)/.installed
	$(PY) run_all.py

test: $(VENV)/.installed
	$(PY) -m pytest

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.txt
	touch $@

clean:
	rm -rf $(VENV) .cache .pytest_cache
