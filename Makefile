# `make test` and `make run` each set up .venv on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test run export check bench clean-venv

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Export every notebook to exp/, then run every notebook in order.
run: $(STAMP)
	$(PY) notebook2script.py --all
	$(PY) run_notebook.py --all

# exp/ must match the notebooks; then the tool tests and every notebook.
test: $(STAMP)
	$(PY) notebook2script.py --all --check
	$(PY) -m pytest

export: $(STAMP)
	$(PY) notebook2script.py --all

check: $(STAMP)
	$(PY) notebook2script.py --all --check

bench: $(STAMP)
	for f in bench/*.py; do $(PY) $$f || exit 1; done

clean-venv:
	rm -rf $(VENV)
