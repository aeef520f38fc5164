# Two commands matter: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= $(shell command -v python3.11 2>/dev/null || command -v python3)
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# uv (from PyPI) installs the pinned lock in seconds; pip is the fallback. Bytecode is
# compiled at install (as pip does): with PYTHONDONTWRITEBYTECODE set, or a read-only venv,
# every process (each test worker, each CLI subprocess) would otherwise compile the
# libraries again from source.
UV     ?= $(shell command -v uv 2>/dev/null)
COMPILE = --universal --python-version 3.11 --no-header --quiet

.PHONY: demo test lint fmt bench bench-backtrader serve clean lock mutate

$(STAMP): requirements-dev.lock
	$(PYTHON) -m venv $(VENV)
	@if [ -n "$(UV)" ]; then \
	  echo "installing requirements-dev.lock with $(UV)"; \
	  $(UV) pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.lock; \
	elif $(PY) -m pip install --quiet --disable-pip-version-check uv 2>/dev/null \
	     && $(PY) -m uv --version >/dev/null 2>&1; then \
	  echo "installing requirements-dev.lock with uv"; \
	  $(PY) -m uv pip install --quiet --compile-bytecode --python $(PY) -r requirements-dev.lock; \
	else \
	  echo "uv unavailable: installing requirements-dev.lock with pip"; \
	  $(PY) -m pip install --quiet --upgrade pip && \
	  $(PY) -m pip install --quiet -r requirements-dev.lock; \
	fi
	touch $(STAMP)

# Re-pin every transitive version after editing requirements.in or requirements-dev.in;
# requirements.txt (what Azure Functions deploys) is the runtime lock without comments.
lock: $(STAMP)
	@UV="$(or $(UV),$(PY) -m uv)"; \
	$$UV pip compile $(COMPILE) requirements.in -o requirements.lock && \
	$$UV pip compile $(COMPILE) -c requirements.lock requirements-dev.in -o requirements-dev.lock
	{ echo "# Generated from requirements.lock by \`make lock\`: edit requirements.in instead."; \
	  echo "# Every transitive version pinned; deployable as is to Azure Functions (Python 3.11)."; \
	  grep -v '^[[:space:]]*#' requirements.lock; } > requirements.txt

demo: $(STAMP)
	$(PY) -m race demo

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytest

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

fmt: $(STAMP)
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

serve: $(STAMP)
	$(PY) -m race serve

bench: $(STAMP)
	$(PY) bench/replay.py

# The race against backtrader (a benchmark-only dependency, requirements-bench.txt) in its
# own virtualenv, so the app's .venv and lock files never hold it. BENCH_ARGS="--runs 3".
BENCH_VENV := .venv-bench
$(BENCH_VENV)/.installed: requirements-dev.lock requirements-bench.txt
	$(PYTHON) -m venv $(BENCH_VENV)
	@if [ -n "$(UV)" ]; then \
	  $(UV) pip install --quiet --compile-bytecode --python $(BENCH_VENV)/bin/python \
	    -r requirements-dev.lock -r requirements-bench.txt; \
	else \
	  $(BENCH_VENV)/bin/python -m pip install --quiet --disable-pip-version-check \
	    -r requirements-dev.lock -r requirements-bench.txt; \
	fi
	touch $@

bench-backtrader: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python bench/vs_backtrader.py $(BENCH_ARGS)

# Mutation testing of the pure core (race/domain/, market/validation.py and candle_rows.py) against its fast unit
# tests; configured in pyproject's [tool.mutmut]. Not part of `make test` or CI: it takes
# minutes. mutmut is installed on first use only (not in the lock files).
MUTMUT_VERSION := 3.8.1
mutate: $(STAMP)
	@$(PY) -c "import importlib.metadata as m, sys; \
	  sys.exit(m.version('mutmut') != '$(MUTMUT_VERSION)')" 2>/dev/null \
	  || $(PY) -m pip install --quiet --disable-pip-version-check 'mutmut==$(MUTMUT_VERSION)'
	rm -rf mutants
	$(PY) -m mutmut run --max-children $(or $(MUTATE_JOBS),1)
	@$(PY) -m mutmut results --all true | awk '{ m = $$1; sub(/\.x(_|ǁ).*/, "", m); n[m]++; \
	  if ($$2 == "killed") k[m]++ } END { for (m in n) \
	  printf "%-24s %4d/%-4d killed (%.1f %%)\n", m, k[m], n[m], 100 * k[m] / n[m] }'
	$(PY) -m mutmut results

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis mutants
