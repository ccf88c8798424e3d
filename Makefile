# The two commands of the README: `make demo` and `make test`. Both create .venv when it is missing and install the
# project into it with pip; the stamp file re-installs only when pyproject.toml changes.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.dlparts-installed

.PHONY: demo test bench install clean

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

bench: $(STAMP)
	@set -e; for f in benchmarks/*.py; do echo "== $$f"; $(PY) $$f; done

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
