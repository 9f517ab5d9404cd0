# Two entry points for people: `make demo` and `make test`. Both install into .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast bench lint typecheck check clean

$(STAMP): pyproject.toml setup.py $(wildcard src/vhlake/native/*.c src/vhlake/native/*.h)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,spark,kafka,pandas,databricks,ml]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vhlake demo --serve

test: $(STAMP)
	$(BIN)/python -m pytest

# The quick loop while changing vhlake: unit and embedded tests (the pipeline, silver and gold, the API on real
# lakes), without what starts Spark's JVM, a Kafka broker, an S3 server or chromium, or is marked slow.
# `make test` (what CI runs) still runs everything.
FAST := not (spark or kafka or s3 or browser or slow)
test-fast: $(STAMP)
	$(BIN)/python -m pytest -m "$(FAST)"

# The benchmark beside PySpark, DuckDB and chDB (bench/run.py --help); EVENTS=10000000 for the 10M run.
# chDB comes from the `bench` extra, installed here only: it is large, and `make test` does not need it.
EVENTS ?= 1000000
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python bench/run.py --events $(EVENTS) --require-chdb

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

check: lint typecheck test

clean:
	rm -rf $(VENV) lake .pytest_cache .mypy_cache .ruff_cache
