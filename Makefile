# make bench       : micro-benchmarks on the device present (prints a table, writes benchmarks/results/latest.*)
# make test        : the test suite with the tested dependency set (CUDA tests skip themselves without a GPU)
# make test-latest : the same suite with the newest versions the registry serves, in its own environment
# make demo        : trains IAPT, prompt tuning and LoRA on SmolLM2 and MiniLM offline, prints a table
# make gpu-check   : on a GPU machine, build + CUDA tests + GPU benchmark tables in under 8 minutes
# make experiments : the paper reproductions on the real models (experiments/results/NAME.md)
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: env env-latest build test test-latest bench bench-pytest demo experiments gpu-check clean

env:
	@VENV=$(VENV) bash tools/bootstrap.sh

env-latest:
	@VENV=.venv-latest FASTPROMPT_DEPS=latest bash tools/bootstrap.sh

build: env

test: env
	$(PY) -m pytest -q tests $(PYTEST_ARGS)

test-latest: env-latest
	.venv-latest/bin/python -m pytest -q tests $(PYTEST_ARGS)

bench: env
	$(PY) -m fastprompt.bench --output benchmarks/results/latest $(BENCH_ARGS)

bench-pytest: env
	$(PY) -m pytest -q benchmarks --benchmark-only $(PYTEST_ARGS)

demo: env
	$(PY) -m fastprompt.demo $(DEMO_ARGS)

experiments: env
	$(PY) -m fastprompt.experiments all $(EXPERIMENTS_ARGS)

# on a machine with a GPU: build for it, CUDA tests, GPU benchmarks, benchmarks/results/*_cuda.md
gpu-check:
	@VENV=$(VENV) bash tools/gpu_check.sh

clean:
	rm -rf build fastprompt/_C*.so *.egg-info
