# `make test` and `make run` each set up .venv on first use; `make lab` adds JupyterLab to it.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LAB_STAMP := $(VENV)/.lab-installed
LAB_ARGS ?=

.PHONY: test run export check prose lint bench lab clean-venv gpu-check gpu-bundle
.PHONY: book serve-book book-test

$(STAMP): requirements.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

# Export every notebook to exp/, then run every notebook: two at a time, except those that use
# both cores, which run alone (run_notebook.py's RUN_ALONE).

run: $(STAMP)
	$(PY) notebook2script.py --all
	$(PY) run_notebook.py --all --jobs 2

# Lint first (seconds), then exp/ must match the notebooks and prose must quote only numbers from
# the run; then the tool tests and every notebook (run as `make run` runs them, two at a time:
# tests/test_notebooks.py).
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) notebook2script.py --all --check
	$(PY) prose_numbers.py
	$(PY) -m pytest

export: $(STAMP)
	$(PY) notebook2script.py --all

check: $(STAMP)
	$(PY) notebook2script.py --all --check

lint: $(STAMP)
	$(PY) -m ruff check .

prose: $(STAMP)
	$(PY) prose_numbers.py

# Every script in bench/ but the harness they share (bench/timing.py).
bench: $(STAMP)
	for f in $(filter-out bench/timing.py,$(wildcard bench/*.py)); do $(PY) $$f || exit 1; done

# JupyterLab is only for reading and editing the notebooks, so it is installed on first use here,
# not by `make test`. The server starts in nbs/ with the repo root on PYTHONPATH (the editable
# install covers exp/ too), so `from exp.nb_03 import *` works in every notebook. Kernels get one
# thread unless OMP_NUM_THREADS says otherwise, as under run_notebook.py, so a run reproduces the
# committed figures.
# Headless: make lab LAB_ARGS=--no-browser
$(LAB_STAMP): | $(STAMP)
	$(PY) -m pip install --quiet jupyterlab
	touch $(LAB_STAMP)

# (Jupyter refuses to run as root unless told: containers often are root, so say it there.)
lab: $(STAMP) $(LAB_STAMP)
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-1} MKL_NUM_THREADS=$${MKL_NUM_THREADS:-1} \
	PYTHONPATH="$(CURDIR)$${PYTHONPATH:+:$$PYTHONPATH}" $(VENV)/bin/jupyter lab --notebook-dir=nbs \
		$(if $(filter 0,$(shell id -u)),--allow-root) $(LAB_ARGS)

clean-venv:
	rm -rf $(VENV)

# The GPU check (gpu_check.py): at most 5 minutes of CUDA tests and notebooks on one GPU, with the
# torch that GPU_PYTHON finds; without a GPU, one line says it skipped. It does not set up .venv:
# a GPU machine may have no network (install gpu-bundle.tar.xz there first: see the README).
GPU_PYTHON ?= python3
gpu-check:
	$(GPU_PYTHON) gpu_check.py

# What the GPU check needs but torch, for a machine without network: wheels and the data caches in
# gpu-bundle.tar.xz (pip downloads the wheels: run it where PyPI can be reached).
gpu-bundle: $(STAMP)
	$(PY) gpu_check.py bundle

# The book (book/, see the README's "The book"): the committed notebooks as a static website that
# reads offline, built into book/_build (not tracked). Its tools have their own venv, .venv/book
# (book/requirements.txt; MathJax from npm, book/package.json), so that they never change the
# versions `make test` runs with. make_pages.py runs on .venv (it imports exp/ for the name index).
BOOK_VENV := $(VENV)/book
BOOK_PY := $(BOOK_VENV)/bin/python
BOOK_STAMP := $(VENV)/.book-installed
BOOK_BUILD := book/_build
MATHJAX := $(BOOK_VENV)/npm/node_modules/mathjax/es5
PORT ?= 8000
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

$(BOOK_STAMP): book/requirements.txt book/package.json
	test -x $(BOOK_PY) || $(PYTHON) -m venv $(BOOK_VENV)
	$(BOOK_PY) -m pip install --quiet -r book/requirements.txt
	mkdir -p $(BOOK_VENV)/npm && cp book/package.json $(BOOK_VENV)/npm/package.json
	npm install --prefix $(BOOK_VENV)/npm --no-audit --no-fund --silent
	touch $(BOOK_STAMP)

# Nothing is executed: the pages show the committed outputs. Sphinx rebuilds only changed pages;
# a warning fails the build (-W), and then its saved state goes, so a rerun warns again.
book: $(STAMP) $(BOOK_STAMP)
	$(PY) book/make_pages.py --mathjax $(MATHJAX)
	$(BOOK_PY) -m sphinx -b html -q -W --keep-going -c book $(BOOK_BUILD)/src $(BOOK_BUILD)/html \
		|| { rm -rf $(BOOK_BUILD)/html/.doctrees; exit 1; }

# http://localhost:$(PORT)/ (make serve-book PORT=8080 for another port).
serve-book:
	test -f $(BOOK_BUILD)/html/index.html || $(MAKE) book
	$(PYTHON) -m http.server $(PORT) --bind 127.0.0.1 --directory $(BOOK_BUILD)/html

# The browser test (book/test_book.py; never collected by `make test`, whose pytest reads tests/):
# Debian's Chromium and chromedriver, installed here when missing, driven by Selenium.
book-test: book
	test -x /usr/bin/chromium && test -x /usr/bin/chromedriver || \
		{ $(SUDO) apt-get update && $(SUDO) apt-get install -y chromium chromium-driver; }
	$(BOOK_PY) -m pytest book/test_book.py -p no:cacheprovider
