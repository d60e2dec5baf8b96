# The two commands of the README, and what they stand on.
#
# Everything installs into a virtual environment: Debian's and Ubuntu's own Python refuse
# `pip install` outside one (PEP 668, "externally-managed-environment"). An activated
# environment is used as it is; otherwise .venv is made with the first python3 on PATH.
VENV ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
BOOTSTRAP_PYTHON ?= python3
PYTHON := $(abspath $(VENV))/bin/python
SIMULATE ?= 200
# The environment's commands (healthwatch, lint-imports, the tests' subprocesses) first,
# as if it were activated.
export VIRTUAL_ENV := $(abspath $(VENV))
export PATH := $(VIRTUAL_ENV)/bin:$(PATH)

.PHONY: demo test install install-dev setup lint pytest first-run

## Install and run the product: every service in one process, 200 simulated customers.
demo: install
	healthwatch dev --simulate $(SIMULATE)

## Check the first command, install everything (Python packages, PostgreSQL, Java, Kafka
## jars), lint, run every test.
test: first-run setup lint pytest

$(PYTHON):
	@bash scripts/make-venv.sh "$(BOOTSTRAP_PYTHON)" "$(VENV)"

# What the demo needs, and only that (the test tools are several times its size). pip
# shows what it fetches; a stamp newer than pyproject.toml skips the step next time.
install: $(VENV)/.installed
$(VENV)/.installed: pyproject.toml | $(PYTHON)
	@echo "installing healthwatch and the packages it runs on into $(VENV) (a minute or two the first time)"
	$(PYTHON) -m pip install --disable-pip-version-check --progress-bar on -e .
	@touch $@

install-dev: $(VENV)/.installed-dev
$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed
	@echo "installing the test and lint tools into $(VENV)"
	$(PYTHON) -m pip install --disable-pip-version-check --progress-bar off -e '.[dev]'
	@touch $@

setup: install-dev
	PYTHON=$(PYTHON) bash scripts/setup-test-services.sh

lint: install-dev
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy services shared
	lint-imports --no-cache

# The browser tests skip without Chromium on a laptop; here they must run.
pytest: install-dev
	HEALTHWATCH_REQUIRE_BROWSER=1 $(PYTHON) -m pytest -q

# The README's first command as a newcomer runs it: a copy of this tree, the system's own
# Python, no virtual environment, no settings in the environment (CI's first step).
first-run:
	bash scripts/check-first-run.sh
