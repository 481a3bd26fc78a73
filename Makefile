# make bench : micro-benchmarks on the device present (prints a table, writes benchmarks/results/latest.*)
# make test  : the test suite (CUDA tests skip themselves without a GPU)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: env build test bench bench-pytest clean

env:
	@bash tools/bootstrap.sh

build: env

test: env
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

bench: env
	$(PY) -m fastprompt.bench --output benchmarks/results/latest $(BENCH_ARGS)

bench-pytest: env
	$(PY) -m pytest -q benchmarks --benchmark-only $(PYTEST_ARGS)

clean:
	rm -rf build fastprompt/_C*.so *.egg-info
