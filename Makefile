# Two commands: `make run` (the demo) and `make test` (everything). See README.md.
# Both install from the lock files, every file checked against its sha256; `make lock` refreshes them.
VENV := .venv
PY := $(VENV)/bin/python
PIP_INSTALL := $(PY) -m pip install -q
FLASK := $(VENV)/bin/flask --app app
export BESIK_ENV ?= demo

# `make lock` only: uv writes the lock files, for CPython 3.11 on Linux x86_64 (this machine).
UV_VERSION := 0.13.9
LOCK_TOOL := $(VENV)/lock-tool
UV_COMPILE := $(LOCK_TOOL)/bin/uv pip compile --quiet --upgrade --generate-hashes \
	--python-version 3.11 --python-platform x86_64-unknown-linux-gnu \
	--custom-compile-command 'make lock'

.PHONY: run test lint chromium libreoffice lock clean

# pip and setuptools first (requirements-build.lock), so that nothing after is fetched unchecked:
# pip's build isolation would download setuptools without a hash, hence --no-build-isolation
# (http-ece is an sdist, built here; the project itself is installed editable, which has no hash).
$(VENV)/.installed: requirements-build.lock requirements.lock pyproject.toml
	python3 -m venv $(VENV)
	$(PIP_INSTALL) --require-hashes -r requirements-build.lock
	$(PIP_INSTALL) --require-hashes --no-build-isolation -r requirements.lock
	$(PIP_INSTALL) --no-deps --no-build-isolation -e .
	$(PY) -m pip check
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed requirements-test.lock
	$(PIP_INSTALL) --require-hashes --no-build-isolation -r requirements-test.lock
	$(PY) -m pip check
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

# LibreOffice (headless Calc) opens an exported workbook in the tests, as an administrator's
# spreadsheet program would.
libreoffice:
	@if command -v soffice >/dev/null; then :; \
	elif [ "$$(id -u)" = 0 ]; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
			--no-install-recommends libreoffice-calc-nogui >/dev/null) \
		|| { echo "could not install LibreOffice Calc with apt-get" >&2; exit 1; }; \
	else echo "LibreOffice Calc is needed for the export tests: run 'sudo apt-get install -y libreoffice-calc-nogui'" >&2; exit 1; fi

lint: $(VENV)/.installed-test
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

test: $(VENV)/.installed-test chromium libreoffice lint
	$(VENV)/bin/pytest

$(LOCK_TOOL)/.uv-$(UV_VERSION):
	python3 -m venv $(LOCK_TOOL)
	$(LOCK_TOOL)/bin/python -m pip install -q uv==$(UV_VERSION)
	touch $@

# Every pin to the newest release pyproject.toml's bounds allow; the runtime lock is constrained by
# the test lock, so the demo runs exactly the versions the tests ran.
lock: $(LOCK_TOOL)/.uv-$(UV_VERSION)
	python3 -c 'import tomllib; print(*tomllib.load(open("pyproject.toml", "rb"))["build-system"]["requires"], "pip", sep="\n")' \
		| $(UV_COMPILE) - -o requirements-build.lock
	$(UV_COMPILE) pyproject.toml --extra test -c requirements-build.lock -o requirements-test.lock
	$(UV_COMPILE) pyproject.toml -c requirements-test.lock -o requirements.lock

clean:
	rm -rf $(VENV)
