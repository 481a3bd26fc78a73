"""pytest-benchmark view of the shared cases (fastprompt.bench.cases): one benchmark per case
and provider, grouped by case, so `--benchmark-compare` shows the ratios.

    pytest benchmarks --benchmark-only [-k rational] [--quick]
"""
import pytest
import torch

from fastprompt.bench.core import all_cases, synchronize

from conftest import DEVICES

_PARAMS = []
for _device in DEVICES:
    for _case in all_cases(_device, quick=False):
        for _provider in _case.providers:
            _PARAMS.append(pytest.param(_case, _provider, id=f"{_case.name}-{_provider}"))


@pytest.mark.parametrize("case,provider", _PARAMS)
def test_op(benchmark, case, provider):
    benchmark.group = case.name
    inputs = case.make()
    fn = case.providers[provider]

    def call():
        fn(*inputs)
        synchronize(case.device)

    benchmark.pedantic(call, warmup_rounds=2, rounds=10, iterations=1)
