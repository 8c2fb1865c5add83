# Two commands: `make run` (set up and serve on the embedded SQLite default) and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PY_STAMP := $(VENV)/.installed
NODE_STAMP := node_modules/.installed
WEB_STAMP := web/node_modules/.installed
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

.PHONY: run test check format clean web browser-deps proxy-deps bench bench-quick fuzz

$(PY_STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

$(NODE_STAMP): package.json package-lock.json
	npm ci --no-audit --no-fund
	touch $@

$(WEB_STAMP): web/package.json web/package-lock.json
	cd web && npm ci --no-audit --no-fund
	touch $@

# Rebuild the web editor into collab_server/static; commit the result (serving needs no Node).
web: $(WEB_STAMP)
	cd web && node build.mjs

# Debian's Chromium for the browser test, installed only when it is missing.
browser-deps:
	test -x /usr/bin/chromium || { $(SUDO) apt-get update && \
		$(SUDO) apt-get install -y --no-install-recommends chromium fonts-liberation fonts-dejavu-core; }

# Debian's HAProxy for the proxy test (deploy/haproxy.cfg), installed only when it is missing.
proxy-deps:
	test -x /usr/sbin/haproxy || { $(SUDO) apt-get update && \
		$(SUDO) apt-get install -y --no-install-recommends haproxy; }

run: $(PY_STAMP)
	$(BIN)/collab-server serve

test: $(PY_STAMP) $(NODE_STAMP) browser-deps proxy-deps
	$(BIN)/pytest

# The relay benchmark against the reference server (bench/README.md); BENCH_ARGS passes options.
bench: $(PY_STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench.run_relay $(BENCH_ARGS)

bench-quick: $(PY_STAMP) $(NODE_STAMP)
	$(BIN)/python -m bench.run_relay --quick $(BENCH_ARGS)

# The structure-aware fuzzer against a real server process (bench/fuzz/README.md); FUZZ_ARGS
# passes options, e.g. FUZZ_ARGS="--frames 1000000 --seed 1".
fuzz: $(PY_STAMP)
	$(BIN)/python -m bench.fuzz.run $(FUZZ_ARGS)

check: $(PY_STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: $(PY_STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) node_modules web/node_modules .mypy_cache .ruff_cache .pytest_cache
