# Two commands for a newcomer:  `make demo` (set up, then run the CPU demo)  and  `make test` (set up, then test).
# `make setup` alone creates .venv and installs attrpipe with its test extras; it reruns only when pyproject.toml
# changes.
PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.attrpipe-installed

.PHONY: setup test test-fast demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet -e '.[dev]'
	touch $@

test: setup
	$(VENV)/bin/python -m pytest

test-fast: setup
	$(VENV)/bin/python -m pytest -m "not slow"

demo: setup
	$(VENV)/bin/attrpipe demo conf/demo_cpu.yaml

clean:
	rm -rf runs data/demo .cache
