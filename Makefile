# Two commands: `make run` (the demo) and `make test` (everything). See README.md.
VENV := .venv
PY := $(VENV)/bin/python
FLASK := $(VENV)/bin/flask --app app
export BESIK_ENV ?= demo

.PHONY: run test lint chromium clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install -q -e '.[test]'
	touch $@

run: $(VENV)/.installed
	mkdir -p instance
	$(FLASK) init-db
	$(FLASK) seed-demo --if-empty
	$(FLASK) vapid-keys
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" $(VENV)/bin/honcho start -p "$${PORT:-8000}"

chromium:
	@if [ -x /usr/bin/chromium ]; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
		|| { echo "could not install Debian's chromium with apt-get" >&2; exit 1; }; \
	else echo "Debian's chromium is needed for the browser tests: run 'sudo apt-get install -y chromium'" >&2; exit 1; fi

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: $(VENV)/.installed-test chromium lint
	$(VENV)/bin/pytest

clean:
	rm -rf $(VENV)
