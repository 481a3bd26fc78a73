"""fastprompt.attention_pool and SelfAttentionPooling against the float64 reference."""
import pytest
import torch

import fastprompt
from fastprompt.reference import attention_pool_ref

from conftest import DEVICES, LOW_PRECISION, assert_close, requires_cuda, require
from op_harness import OpTester, Sample, run_with_grads

# (B, T, D, K): odd and prime sizes, one longer than a token chunk (256), single elements
SHAPES = [(2, 7, 13, 3), (3, 300, 37, 5), (1, 1, 1, 1), (4, 17, 64, 4), (2, 521, 9, 2)]


def _inputs(shape, device, dtype=torch.float64, queries_dtype=None, masked=True, seed=0):
    gen = torch.Generator().manual_seed(seed)
    B, T, D, K = shape
    z = torch.randn(B, T, D, generator=gen, dtype=torch.float64).to(device, dtype)
    queries = (torch.randn(D, K, generator=gen, dtype=torch.float64) / D ** 0.5).to(device, queries_dtype or dtype)
    mask = None
    if masked:
        mask = torch.rand(B, T, generator=gen) > 0.3
        mask[:, 0] = True
        mask = mask.to(device)
    return z, queries, mask


def _reference_grads(z, queries, mask, grad_out):
    return run_with_grads(lambda a, b: attention_pool_ref(a, b, mask), (z, queries), grad_out, double=True)


def _kernel_grads(z, queries, mask, grad_out):
    return run_with_grads(lambda a, b: fastprompt.attention_pool(a, b, mask), (z, queries), grad_out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("masked", [False, True], ids=["nomask", "mask"])
def test_forward_and_gradients_match_reference_float64(device, shape, masked):
    z, queries, mask = _inputs(shape, device, masked=masked, seed=hash(shape) % 1000)
    grad_out = torch.randn(shape[0], shape[3], shape[2], dtype=torch.float64, device=device)
    out, dz, dq = _kernel_grads(z, queries, mask, grad_out)
    ref, dz_ref, dq_ref = _reference_grads(z, queries, mask, grad_out)
    assert out.shape == (shape[0], shape[3], shape[2]) and out.dtype == torch.float64
    assert_close(out, ref, torch.float64)
    assert_close(dz, dz_ref, torch.float64)
    assert_close(dq, dq_ref, torch.float64)
    if mask is not None:  # masked tokens get no gradient
        assert (dz[~mask] == 0).all()


class AttentionPoolTester(OpTester):
    """The shared op tests (tests/op_harness.py) of fastprompt.attention_pool."""

    op = staticmethod(fastprompt.attention_pool)
    reference = staticmethod(attention_pool_ref)

    def reference_cases(self):
        def float32(shape):
            # the queries gradient is a sum over B * T terms
            return lambda device: Sample(_inputs(shape, device, torch.float32), torch.float32, {1: 10})

        def low(dtype, queries_dtype):
            qd = dtype if queries_dtype == "same" else torch.float32
            return lambda device: Sample(_inputs((3, 70, 24, 4), device, dtype, qd), dtype, {1: 4})

        cases = {f"float32-{shape}": float32(shape) for shape in [(2, 300, 40, 4), (3, 19, 7, 3)]}
        cases.update({f"{dtype}-queries_{qd}": low(dtype, qd) for dtype in LOW_PRECISION
                      for qd in ("same", "float32")})
        return cases

    def gradcheck_cases(self):
        def case(masked):
            def build(device):
                z, queries, mask = _inputs((2, 6, 5, 3), device)
                mask = mask if masked else None
                return (lambda a, b: fastprompt.attention_pool(a, b, mask)), (z.requires_grad_(True),
                                                                                queries.requires_grad_(True))
            return build

        return {"mask": case(True), "nomask": case(False)}

    def opcheck_cases(self):
        def build(device):
            z, queries, mask = _inputs((2, 9, 6, 3), device)
            z.requires_grad_(True)
            queries.requires_grad_(True)
            out, lse = torch.ops.fastprompt.attention_pool.default(z, queries, mask)
            return [(torch.ops.fastprompt.attention_pool.default, (z, queries, mask)),
                    (torch.ops.fastprompt.attention_pool.default, (z, queries, None)),
                    (torch.ops.fastprompt.attention_pool_backward.default,
                     (torch.randn_like(out), z.detach(), queries.detach(), mask, out.detach(), lse))]

        return {"float64": build}

    def non_contiguous_cases(self):
        def build(device):
            B, T, D, K = 3, 40, 12, 4
            gen = torch.Generator().manual_seed(3)
            z = torch.randn(T, B, 2 * D, generator=gen, dtype=torch.float64).to(device).transpose(0, 1)[..., ::2]
            queries = torch.randn(K, D, generator=gen, dtype=torch.float64).to(device).t()
            mask = (torch.rand(T, B, generator=gen) > 0.2).to(device).t()
            assert not z.is_contiguous() and not queries.is_contiguous() and not mask.is_contiguous()
            return Sample((z, queries, mask))

        return {"strided": build}

    def empty_cases(self):
        def case(shape):
            return lambda device: Sample(_inputs(shape, device, masked=False))

        return {str(shape): case(shape) for shape in [(0, 5, 4, 2), (2, 0, 4, 2), (2, 5, 4, 0), (2, 5, 0, 3)]}

    def compile_cases(self):
        return {"float32": lambda device: _inputs((2, 11, 8, 3), device, torch.float32)}


AttentionPoolTester().add_tests(globals())


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16], ids=str)
def test_fully_masked_rows_give_zeros_and_zero_gradients(device, dtype):
    z, queries, mask = _inputs((3, 20, 8, 2), device, dtype, torch.float32)
    mask[1] = False
    grad_out = torch.randn(3, 2, 8, device=device)
    out, dz, dq = _kernel_grads(z, queries, mask, grad_out)
    assert torch.isfinite(out).all() and torch.isfinite(dz).all() and torch.isfinite(dq).all()
    assert (out[1] == 0).all() and (dz[1] == 0).all()
    # the other rows alone give the same queries gradient
    keep = torch.tensor([0, 2], device=device)
    _, _, dq_rest = _kernel_grads(z[keep], queries, mask[keep], grad_out[keep])
    assert_close(dq, dq_rest, dtype)


@pytest.mark.parametrize("device", DEVICES)
def test_large_scores_stay_finite(device):
    z, queries, mask = _inputs((2, 50, 16, 3), device, torch.float32)
    z = z * 300.0  # scores in the thousands: a naive exp overflows
    grad_out = torch.randn(2, 3, 16, device=device)
    out, dz, dq = _kernel_grads(z, queries, mask, grad_out)
    ref, dz_ref, dq_ref = _reference_grads(z, queries, mask, grad_out)
    assert torch.isfinite(out).all() and torch.isfinite(dz).all() and torch.isfinite(dq).all()
    assert_close(out, ref, torch.float32, scale=300)
    assert_close(dz, dz_ref, torch.float32, scale=300)


def test_results_do_not_depend_on_thread_count():
    z, queries, mask = _inputs((5, 700, 33, 4), "cpu", torch.float32)
    grad_out = torch.randn(5, 4, 33)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = _kernel_grads(z, queries, mask, grad_out)
        torch.set_num_threads(max(2, threads))
        many = _kernel_grads(z, queries, mask, grad_out)
    finally:
        torch.set_num_threads(threads)
    for a, b in zip(one, many):
        assert torch.equal(a, b)


def _raises(match, *args, exc=(RuntimeError, ValueError)):
    with pytest.raises(exc, match=match):
        fastprompt.attention_pool(*args)


def test_bad_inputs_name_the_argument():
    z = torch.randn(2, 5, 4)
    q = torch.randn(4, 3)
    _raises("mask", z, q, torch.ones(2, 6, dtype=torch.bool))
    _raises("mask", z, q, torch.ones(2, 5))  # not bool
    _raises("queries", z, torch.randn(5, 3))
    _raises("queries", z, torch.randn(4))
    _raises("z", torch.randn(5, 4), q)
    _raises("z", torch.ones(2, 5, 4, dtype=torch.int64), q)
    _raises("queries", z.double(), q)  # float64 z needs float64 queries
    # the C++ kernels check too, with the same wording
    with pytest.raises(RuntimeError, match="mask"):
        torch.ops.fastprompt.attention_pool.default(z, q, torch.ones(3, 5, dtype=torch.bool))
    with pytest.raises(RuntimeError, match="queries"):
        torch.ops.fastprompt.attention_pool.default(z, torch.randn(3, 3), None)
    with pytest.raises(RuntimeError, match="grad_out"):
        out, lse = torch.ops.fastprompt.attention_pool.default(z, q, None)
        torch.ops.fastprompt.attention_pool_backward.default(torch.randn(2, 3, 5), z, q, None, out, lse)


@requires_cuda
def test_device_mismatch_names_the_argument():
    with pytest.raises(RuntimeError, match="queries"):
        fastprompt.attention_pool(torch.randn(2, 5, 4, device="cuda"), torch.randn(4, 3))


@pytest.mark.parametrize("device", DEVICES)
def test_self_attention_pooling_module(device):
    pool = fastprompt.nn.SelfAttentionPooling(12, 4).to(device)
    assert pool.queries.shape == (12, 4)
    z = torch.randn(3, 9, 12, device=device, requires_grad=True)
    mask = torch.rand(3, 9, device=device) > 0.3
    out = pool(z, mask)
    assert out.shape == (3, 4, 12)
    torch.testing.assert_close(out, attention_pool_ref(z, pool.queries, mask), rtol=2e-4, atol=2e-5)
    out.sum().backward()
    assert pool.queries.grad is not None and torch.isfinite(pool.queries.grad).all()
    with pytest.raises(ValueError, match="num_tokens"):
        fastprompt.nn.SelfAttentionPooling(12, 0)


def test_random_shapes_and_masks_match_reference():
    hypothesis = require("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
    @hypothesis.given(B=st.integers(1, 3), T=st.integers(1, 300), D=st.integers(1, 20), K=st.integers(1, 9),
                      keep=st.floats(0.0, 1.0), seed=st.integers(0, 2 ** 16))
    def check(B, T, D, K, keep, seed):
        gen = torch.Generator().manual_seed(seed)
        z = torch.randn(B, T, D, generator=gen, dtype=torch.float64)
        queries = torch.randn(D, K, generator=gen, dtype=torch.float64)
        mask = torch.rand(B, T, generator=gen) < keep
        grad_out = torch.randn(B, K, D, generator=gen, dtype=torch.float64)
        out, dz, dq = _kernel_grads(z, queries, mask, grad_out)
        ref, dz_ref, dq_ref = _reference_grads(z, queries, mask, grad_out)
        assert_close(out, ref, torch.float64)
        assert_close(dz, dz_ref, torch.float64)
        assert_close(dq, dq_ref, torch.float64)

    check()


@pytest.mark.parametrize("device", DEVICES)
def test_per_row_queries_pool_each_row_with_its_own_queries(device):
    z, _, mask = _inputs((4, 30, 12, 3), device, torch.float32)
    queries = (torch.randn(4, 12, 3, dtype=torch.float64) / 12 ** 0.5).to(device, torch.float32)
    grad_out = torch.randn(4, 3, 12, device=device)
    out, dz, dq = run_with_grads(lambda a, b: fastprompt.attention_pool(a, b, mask), (z, queries), grad_out)
    for b in range(4):
        alone, dz_b, dq_b = run_with_grads(lambda a, q: fastprompt.attention_pool(a, q, mask[b:b + 1]),
                                           (z[b:b + 1], queries[b]), grad_out[b:b + 1])
        assert_close(out[b:b + 1], alone, torch.float32)
        assert_close(dz[b:b + 1], dz_b, torch.float32)
        assert_close(dq[b], dq_b, torch.float32)
    with pytest.raises(RuntimeError, match=r"queries: expected shape \(4, 12, num_queries\)"):
        fastprompt.attention_pool(z, queries[:3], mask)
    with pytest.raises(RuntimeError, match="queries: expected float64 queries"):
        fastprompt.attention_pool(z.double(), queries, mask)
