# Two commands on a fresh machine: `make run` starts the gateway locally, `make test` runs every test.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NODE_STAMP := tests/node/node_modules/.installed

.PHONY: install run test lint bench clean

install: $(STAMP)

$(STAMP): requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/python -m devstack

lint: $(STAMP)
	$(BIN)/cfn-lint infra/template.yaml

# The official OpenAI Node SDK, for the tests that use it as a client.
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: lint $(NODE_STAMP)
	$(BIN)/python -m pytest -q

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache tests/node/node_modules
