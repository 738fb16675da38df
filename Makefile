# Two commands do all the set-up on a fresh machine with Python 3.11+:
#   make demo   - the main job: the vanishing-gradient study (a few minutes on 2 CPU cores)
#   make test   - the test suite (what CI runs, via .ci/run)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test test-slow install clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test,experiments,data]"
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/python -m experiments study

test: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 -q

test-slow: $(VENV)/.installed
	$(BIN)/python -m pytest -n 2 -q -m slow

clean:
	rm -rf $(VENV) runs .pytest_cache
