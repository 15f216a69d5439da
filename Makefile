# Two commands: `make run` runs every homework, `make test` runs the test suite.
# Each creates .venv and installs the exact versions in requirements.lock on first use (or when the lock
# changes). `make lock` refreshes the lock from requirements.txt, the loose specification.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: run test lock clean mutate

run: $(VENV)/.installed
	$(PY) run_all.py

# The suite on up to 4 worker processes (pytest-xdist), one thread each: 78-89 s against 125-141 s on 2 cores (AVX2);
# 73-80 s on 2 cores with AVX-512 BF16.
test: $(VENV)/.installed
	$(PY) -m pytest -n auto --maxprocesses 4

$(VENV)/.installed: requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements.lock
	touch $@

# A fresh environment from requirements.txt, frozen. torch's CUDA libraries (nvidia-*, cuda-*, triton)
# are left out: torch pins them itself, per platform, so the lock also installs where they do not exist.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install -r requirements.txt
	{ echo "# exact versions the committed results were made with; refresh with 'make lock'"; \
	  .lock-venv/bin/pip freeze | grep -v -E '^(nvidia-|cuda-|triton==)'; } > requirements.lock
	rm -rf .lock-venv

# Mutation testing (development only, not part of CI): the modules in one mutmut run, updating tests/MUTATION.md.
MODULE ?= $(filter-out common/__init__.py,$(wildcard common/*.py)) hw1/layers.py hw2/batchnorm.py hw3/model.py \
	hw3/report.py hw3/predict.py hw4/model.py hw4/explain.py hw4/predict.py
mutate: $(VENV)/.installed
	$(PY) -m pip install -q mutmut==3.8.1
	OMP_NUM_THREADS=1 $(PY) tests/mutation_summary.py $(MODULE)

clean:
	rm -rf $(VENV) .cache .pytest_cache mutants
