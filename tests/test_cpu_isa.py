"""Every CPU op family gives the same results with each instruction-set build: baseline, AVX2 + FMA
and AVX-512 (the builds this CPU runs; FASTPROMPT_CPU_ISA caps the run-time choice, read on every
call). The default (widest) build is compared with each capped one, forward and every gradient."""
import pytest
import torch

import fastprompt
from fastprompt._dtypes import accumulation_dtype

from conftest import assert_close

DTYPES = [torch.float64, torch.float32, torch.float16, torch.bfloat16]
ISAS = ["baseline", "avx2", "avx512"]


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _randn(*shape, dtype, scale=1.0, seed=0):
    return (torch.randn(shape, generator=_gen(seed), dtype=torch.float64) * scale).to(dtype)


def _outputs_and_grads(fn, inputs, seed=1):
    leaves = [t.detach().requires_grad_(t.is_floating_point()) if t is not None else None for t in inputs]
    out = fn(*leaves)
    out.backward(_randn(*out.shape, dtype=out.dtype, seed=seed))
    return [out.detach()] + [t.grad for t in leaves if t is not None and t.is_floating_point()]


def rational_case(dtype, form):
    x = _randn(3, 4 * 37, dtype=dtype, scale=2.0)
    a = _randn(4, 6, dtype=accumulation_dtype(dtype), seed=2)
    b = _randn(4, 5, dtype=accumulation_dtype(dtype), seed=3)
    return _outputs_and_grads(lambda x, a, b: fastprompt.rational(x, a, b, form), [x, a, b])


def attention_pool_case(dtype):
    z = _randn(3, 53, 19, dtype=dtype)
    queries = _randn(19, 5, dtype=dtype, seed=2)
    mask = torch.rand(3, 53, generator=_gen(4)) > 0.3
    mask[1] = False  # a row without a real token
    return _outputs_and_grads(lambda z, q: fastprompt.attention_pool(z, q, mask), [z, queries])


def multispace_case(dtype, gate):
    x = _randn(13, 21, dtype=dtype)
    weight = _randn(3, 21, 17, dtype=dtype, scale=0.2, seed=2)
    bias = _randn(3, 17, dtype=dtype, seed=3)
    logits = _randn(*((13, 3) if gate == "per_row" else (3,)), dtype=dtype, seed=4)
    return _outputs_and_grads(fastprompt.multispace_project, [x, weight, bias, logits])


def combine_case(dtype):
    bank = _randn(5, 7, 131, dtype=dtype)
    weights = _randn(4, 5, dtype=dtype, seed=2)
    base = _randn(7, 131, dtype=dtype, seed=3)
    return _outputs_and_grads(fastprompt.combine, [bank, weights, base])


def merge_case(dtype, method):
    vectors = _randn(5, 11, 67, dtype=dtype)
    weights = torch.rand(5, generator=_gen(2), dtype=torch.float64).to(dtype) + 0.2
    return [fastprompt.merge(vectors, method, weights, density=0.37, sign="total", seed=7)]


CASES = {
    "rational_A": lambda dtype: rational_case(dtype, "A"),
    "rational_B": lambda dtype: rational_case(dtype, "B"),
    "attention_pool": attention_pool_case,
    "multispace_shared": lambda dtype: multispace_case(dtype, "shared"),
    "multispace_per_row": lambda dtype: multispace_case(dtype, "per_row"),
    "combine": combine_case,
    **{f"merge_{m}": (lambda dtype, m=m: merge_case(dtype, m))
       for m in ["task_arithmetic", "magnitude_prune", "ties", "dare", "dare_ties"]},
}


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("case", list(CASES))
def test_instruction_set_builds_agree(monkeypatch, case, dtype, isa):
    monkeypatch.delenv("FASTPROMPT_CPU_ISA", raising=False)
    widest = CASES[case](dtype)
    monkeypatch.setenv("FASTPROMPT_CPU_ISA", isa)
    capped = CASES[case](dtype)
    assert len(widest) == len(capped)
    for i, (expected, actual) in enumerate(zip(widest, capped)):
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        # the builds differ in vector width and FMA contraction, so in the last bits of the
        # float32 accumulators; in float64 they agree to the float64 tolerance
        assert_close(actual, expected, dtype, scale=8, msg=f"{case}: output {i} with FASTPROMPT_CPU_ISA={isa}")
