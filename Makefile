# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make demo   - the main job: the vanishing-gradient study (a few minutes on 2 CPU cores)
#   make test   - lint, the docs site and the test suite (what CI runs, via .ci/run)
#   make docs   - the documentation site, built into site/
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint docs-check docs test-slow install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,experiments,data,docs]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m experiments study

test: lint docs-check
	$(BIN)/python -m pytest -n 2 -q --durations=30  # the 30 slowest, so every CI log says where the time goes

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports  # the layers contract in pyproject.toml

# --strict: a broken link, a missing page or an API reference that does not resolve fails the build
docs-check: $(VENV)/.installed
	$(BIN)/mkdocs build --strict --site-dir build/site-check  # not --quiet: it hides the warnings strict mode counts

docs: $(VENV)/.installed
	$(BIN)/mkdocs build --strict

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache site build
