# Two entry points, both idempotent: `make demo` and `make test`.
# The venv is (re)built only when pyproject.toml changes.
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.ceod-installed
export NO_ALBUMENTATIONS_UPDATE := 1
export PYTHONUNBUFFERED := 1

.PHONY: setup demo demo-quick test clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/ceod demo --out runs/demo

demo-quick: $(STAMP)
	$(VENV)/bin/ceod demo --out runs/demo-quick --quick

test: $(STAMP)
	$(PY) -m pytest -q --durations=10

clean:
	rm -rf runs .pytest_cache
