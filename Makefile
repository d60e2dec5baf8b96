# The two commands of the README, and what they stand on.
PYTHON ?= python3
SIMULATE ?= 200

.PHONY: demo test install setup lint pytest

## Install and run the product: every service in one process, 200 simulated customers.
demo: install
	healthwatch dev --simulate $(SIMULATE)

## Install everything (Python packages, PostgreSQL, Java, Kafka jars), lint, run every test.
test: setup lint pytest

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[dev]'

setup: install
	PYTHON=$(PYTHON) bash scripts/setup-test-services.sh

lint:
	$(PYTHON) -m ruff check .
	$(PYTHON) -m ruff format --check .
	$(PYTHON) -m mypy services shared
	lint-imports --no-cache

# The browser tests skip without Chromium on a laptop; here they must run.
pytest:
	HEALTHWATCH_REQUIRE_BROWSER=1 $(PYTHON) -m pytest -q
