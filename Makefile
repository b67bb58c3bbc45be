# Two commands do all the set-up: `make run` and `make test` (see README.md).
PYTHON ?= python3.11
VENV   := .venv
PY     := $(VENV)/bin/python
HMREC  := $(VENV)/bin/hmrec
STAMP  := $(VENV)/.installed
SCALE  ?= small
SEED   ?= 7
SAMPLE ?= data/sample-$(SCALE)
WORKDIR ?= work
HOST   ?= 127.0.0.1
PORT   ?= 8000

.PHONY: setup run test sample pipeline serve bench clean docs

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev,scale]'
	touch $(STAMP)

# What only the tests need, from Debian's packages: Chromium for the browser tests (never a browser build
# downloaded by a test tool) and a PostgreSQL server for the shared event store's tests. `make run` needs neither.
TEST_STAMP := $(VENV)/.test-system
$(TEST_STAMP): $(STAMP)
	test -x /usr/bin/chromium && ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq chromium postgresql; }
	touch $(TEST_STAMP)

sample: setup
	test -f $(SAMPLE)/transactions_train.csv || $(HMREC) data generate --scale $(SCALE) --seed $(SEED) --out $(SAMPLE)

pipeline: sample
	$(HMREC) pipeline --raw $(SAMPLE) --workdir $(WORKDIR) --promote

run: pipeline
	$(HMREC) serve --workdir $(WORKDIR) --host $(HOST) --port $(PORT) --demo

# Serves the current champion of $(WORKDIR) as it is: no sample, no training (`make run` trains and registers first).
# Both take anonymous live events (--demo): for a shared machine, set HMREC_EVENTS_TOKEN and run `hmrec serve` alone.
serve: setup
	$(HMREC) serve --workdir $(WORKDIR) --host $(HOST) --port $(PORT) --demo

# ruff first; pytest exits 5 when it collected no test: that must fail, never pass silently.
# TEST_WORKERS pytest processes take whole test files each (module fixtures are built once); TEST_WORKERS=0 runs
# them in this one process, e.g. to debug with `make test TEST_WORKERS=0 PYTEST_ARGS="-x -k name"`. The 15 slowest
# tests are listed at the end: the suite's budget is 10 minutes on 2 quiet cores, and that list shows where it goes.
TEST_WORKERS ?= 2
test: $(TEST_STAMP)
	$(VENV)/bin/ruff check src tests bench tools
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile --durations=15 $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: no tests ran" >&2; exit 1; fi; exit $$rc

bench: setup
	$(PY) bench/etl.py

clean:
	rm -rf $(WORKDIR) data build

# Regenerates docs/report-small and docs/demo.png from the current code (the small sample, the real pipeline, the
# shop photographed in Debian's Chromium): run it last in a release.
docs: $(TEST_STAMP)
	$(PY) tools/refresh_docs.py
