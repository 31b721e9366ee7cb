# kefu: `make dev` runs the whole system locally, `make test` runs every test suite.
# Both start with `make setup`, which installs only what changed since the last run.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.kefu-setup
export JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION := 20
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: setup web dev test test-unit test-integration test-infra test-e2e synth bench clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt pyproject.toml package.json package-lock.json
	@echo "==> setting up: Python virtualenv, pip packages, npm packages (CDK CLI)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -e .
	npm ci --no-audit --no-fund --loglevel=error
	$(PY) -m kefu.answering.encoder_build
	@command -v chromium >/dev/null || { \
	  echo "==> installing Debian's chromium for the browser tests (never a downloaded browser)"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }
	@touch $(STAMP)
	@echo "==> setup done: the command line is $(VENV)/bin/kefu"

# web/ built into versioned, cache-friendly files (.kefu/web-build/<hash>, a no-op when nothing changed); the
# local stack and `cdk synth` build it too, this only makes a broken reference fail before anything starts
web: setup
	@$(VENV)/bin/kefu build-web

dev: setup web
	$(VENV)/bin/kefu dev

test: setup web
	$(PY) -m pytest tests -q -ra

test-unit: setup
	$(PY) -m pytest tests/unit -q

test-integration: setup web
	$(PY) -m pytest tests/integration -q

test-infra: setup
	$(PY) -m pytest tests/infra -q

test-e2e: setup web
	$(PY) -m pytest tests/e2e -q

synth: setup web
	npx cdk synth -q

bench: setup
	$(VENV)/bin/kefu bench messages --conversations 20 --messages 20

clean:
	rm -rf $(VENV) node_modules cdk.out .kefu
