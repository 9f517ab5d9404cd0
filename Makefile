# Two entry points for people: `make demo` and `make test`. Both install into .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test bench lint typecheck check clean

# The dashboard's charting library, from the npm registry (no CDN at run time: no internet).
ECHARTS := src/vhlake/dashboard/static/vendor/echarts.min.js
ECHARTS_VERSION := 6.1.0

$(ECHARTS):
	mkdir -p build/npm $(dir $(ECHARTS))
	npm install --silent --no-audit --no-fund --prefix build/npm echarts@$(ECHARTS_VERSION)
	cp build/npm/node_modules/echarts/dist/echarts.min.js $(ECHARTS)

$(STAMP): pyproject.toml setup.py $(wildcard src/vhlake/native/*.c src/vhlake/native/*.h) $(ECHARTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark,kafka,pandas,databricks,ml]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vhlake demo --serve

test: $(STAMP)
	$(BIN)/python -m pytest

# The benchmark beside PySpark (bench/run.py --help); EVENTS=10000000 for the 10M run.
EVENTS ?= 1000000
bench: $(STAMP)
	$(BIN)/python bench/run.py --events $(EVENTS)

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) lake .pytest_cache .mypy_cache .ruff_cache
