# Two commands on a fresh machine: `make run` starts the gateway locally, `make test` runs every test.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

NODE_STAMP := tests/node/node_modules/.installed
CONSOLE_STAMP := console/node_modules/.installed
# The third-party modules the web console loads, copied from console/node_modules (not committed).
VENDOR := chalicelib/web/vendor
VENDOR_FILES := $(VENDOR)/preact-htm.js $(VENDOR)/chart.umd.js

.PHONY: install run test lint package bench clean console chromium

install: $(STAMP)

$(STAMP): requirements.txt requirements-server.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	# pip installs only uv, which installs the pinned requirements in seconds (compiled, as pip does).
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv==0.13.9
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -r requirements-dev.txt
	# The operator CLI, as the `tokenway` command in $(BIN).
	$(BIN)/uv pip install --quiet --python $(BIN)/python --editable .
	touch $(STAMP)

run: $(STAMP) console
	$(BIN)/python -m devstack

# The console's pinned modules (console/package-lock.json), and the two files of them it serves.
$(CONSOLE_STAMP): console/package.json console/package-lock.json
	npm ci --prefix console --no-audit --no-fund --loglevel=error
	touch $(CONSOLE_STAMP)

$(VENDOR)/preact-htm.js: $(CONSOLE_STAMP)
	mkdir -p $(VENDOR)
	cp console/node_modules/htm/preact/standalone.module.js $@

$(VENDOR)/chart.umd.js: $(CONSOLE_STAMP)
	mkdir -p $(VENDOR)
	cp console/node_modules/chart.js/dist/chart.umd.js $@

console: $(VENDOR_FILES)

# The browser the console's tests drive: Debian's Chromium (Playwright's own download is not used).
chromium:
	command -v chromium >/dev/null || (apt-get update && apt-get install -y --no-install-recommends chromium)

# The application stack of every stage, packaged into build/STAGE as for a deploy (README, Deploying
# to AWS), with the console's files. Chalice needs a region, though it calls no AWS service: the one
# set, else us-east-1.
package: $(STAMP) console
	AWS_DEFAULT_REGION=$${AWS_DEFAULT_REGION:-$${AWS_REGION:-us-east-1}} $(BIN)/python infra/package_app.py

# The templates (infra and each stage's packaged application stack), the dependency contracts of
# pyproject.toml, and the code's style.
lint: $(STAMP) package
	$(BIN)/cfn-lint infra/template.yaml build/*/sam.yaml
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check --no-cache .

# The official OpenAI Node SDK, for the tests that use it as a client.
$(NODE_STAMP): tests/node/package.json tests/node/package-lock.json
	npm ci --prefix tests/node --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: lint $(NODE_STAMP) console chromium
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) .pytest_cache tests/node/node_modules console/node_modules $(VENDOR) build
