"""pytest-benchmark view of the shared cases (fastprompt.bench.cases): one benchmark per case
and provider, grouped by case, so `--benchmark-compare` shows the ratios.

    pytest benchmarks --benchmark-only [-k rational] [--quick]
"""
import pytest

from fastprompt.bench.core import all_cases, synchronize

from conftest import DEVICES


def pytest_generate_tests(metafunc):
    if "case" not in metafunc.fixturenames:
        return
    quick = metafunc.config.getoption("--quick")
    params = []
    for device in DEVICES:
        for case in all_cases(device, quick=quick):
            for provider in case.providers:
                params.append(pytest.param(case, provider, id=f"{case.name}-{provider}"))
    metafunc.parametrize("case,provider", params)


def test_op(benchmark, case, provider):
    benchmark.group = case.name
    inputs = case.make()
    fn = case.providers[provider]

    def call():
        fn(*inputs)
        synchronize(case.device)

    benchmark.pedantic(call, warmup_rounds=2, rounds=10, iterations=1)
