# The two commands: `make run` (all five services, here, without Docker) and `make test`.
# Both install what they need into .venv first.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PACKAGES := -e contracts -e runtime -e services/orders -e services/ledger -e services/payments -e services/notifications -e services/web
PROJECT_FILES := constraints.txt requirements-dev.txt contracts/pyproject.toml runtime/pyproject.toml $(wildcard services/*/pyproject.toml)

ASYNCAPI_DIR := tools/asyncapi
ASYNCAPI := $(ASYNCAPI_DIR)/node_modules/.bin/asyncapi

.PHONY: install browser run demo test lint chaos asyncapi bench schemas lock clean

$(STAMP): $(PROJECT_FILES)
	scripts/ensure-system-packages.sh
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade "pip>=25"
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt $(PACKAGES) -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP) browser

# Debian's Chromium for the browser tests (Playwright drives it; its own download cannot be used).
browser:
	scripts/install-browser.sh

# All five services and a mail catcher, with a demo group to sign in to (created on the first
# run; its people and password are printed with the URL to open).
run: install
	$(VENV)/bin/cagette-dev run --demo

demo: run

test: install
	$(PY) -m pytest $(PYTEST_ARGS)

# Lint and types: a lint or type error fails CI (`.ci/run` runs this before the tests).
lint: install asyncapi
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

# The quick chaos run (bench/chaos/README.md): its own PostgreSQL cluster and three-node RabbitMQ
# cluster, the five services as processes, 150 orders under every fault; fails on any lost,
# doubled or unparked message. `.ci/run` runs it after the tests (about 2.5 minutes).
chaos: install
	$(PY) bench/chaos/run.py --quick

# The official AsyncAPI CLI (npm, pinned by tools/asyncapi/package-lock.json) validates every
# service's AsyncAPI 3.1 document; an invalid one fails `make lint`.
$(ASYNCAPI): $(ASYNCAPI_DIR)/package.json $(ASYNCAPI_DIR)/package-lock.json
	cd $(ASYNCAPI_DIR) && npm ci --no-audit --no-fund --loglevel=error
	touch $(ASYNCAPI)

asyncapi: install $(ASYNCAPI)
	$(PY) -m cagette_runtime.asyncapi var/asyncapi
	$(ASYNCAPI) config analytics --disable >/dev/null
	for document in var/asyncapi/*.asyncapi.json; do \
	  SUPPRESS_NO_CONFIG_WARNING=1 $(ASYNCAPI) validate "$$document" --fail-severity=warn || exit 1; \
	done

# Every benchmark beside its baseline, same run; three runs each (min / median / max).
bench: install
	$(PY) -m bench.ledger.run --runs 3
	$(PY) -m bench.orders.run --runs 3
	$(PY) -m bench.consumer.drain --runs 3
	$(PY) bench/reads/balances.py --repeat 3

schemas: install
	$(VENV)/bin/cagette-contracts export-schemas contracts/schemas

# Re-pin every third-party dependency (run after changing a pyproject.toml).
lock:
	rm -rf .lock-venv && python3 -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade "pip>=25"
	.lock-venv/bin/pip install --quiet ./contracts ./runtime ./services/orders ./services/ledger ./services/payments ./services/notifications ./services/web -r requirements-dev.txt
	.lock-venv/bin/pip freeze --exclude-editable | grep -v '^cagette-' > constraints.txt
	rm -rf .lock-venv

clean:
	rm -rf $(VENV)
