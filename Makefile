# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing and install the
# project into it with pip; the stamp file re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlparts-installed

.PHONY: demo test bench bench-gpu install clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,bench]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/dlparts conv --stack alexnet-paper
	$(VENV)/bin/dlparts demo

test: $(STAMP)
	$(PY) -m pytest

# benchmarks/ops_gpu.py needs a CUDA GPU: `make bench-gpu` runs it there; benchmarks/_*.py are shared helpers.
bench: $(STAMP)
	@set -e; for f in $(filter-out benchmarks/ops_gpu.py benchmarks/_%.py,$(wildcard benchmarks/*.py)); do \
		echo "== $$f"; $(PY) $$f; done

bench-gpu: $(STAMP)
	$(PY) benchmarks/ops_gpu.py

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
