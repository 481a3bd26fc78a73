"""fastprompt.combine and fastprompt.merge against the float64 reference and peft's merge utilities."""
import pytest
import torch

import fastprompt
from fastprompt.reference.task_arithmetic import MERGE_METHODS, combine_ref, dare_keep_mask, merge_ref

from conftest import DEVICES, HAS_CUDA, LOW_PRECISION, assert_close, require, requires_cuda
from op_harness import OpTester, Sample, run_with_grads

METHODS = list(MERGE_METHODS)


def _gen(seed):
    return torch.Generator().manual_seed(seed)


# ---- combine ---------------------------------------------------------------------------------
# (T, item shape, B): odd and prime sizes, one item larger than a kernel tile, scalar items
COMBINE_SHAPES = [(3, (7, 13), 5), (16, (10, 41), 4), (1, (1,), 1), (5, (), 3), (2, (3, 2, 137), 2)]
BASES = ["none", "shared", "per_row", "broadcast", "leading_one"]


def _combine_inputs(T, item, B, layout, base_kind, device, dtype=torch.float64, seed=0):
    g = _gen(seed)
    bank = torch.randn((T,) + item, generator=g, dtype=torch.float64).to(device, dtype)
    wshape = (B, T) if layout == "2d" else (T,)
    weights = torch.randn(wshape, generator=g, dtype=torch.float64).to(device, dtype)
    lead = (B,) if layout == "2d" else ()
    base = None
    if base_kind == "shared":
        base = torch.randn(item, generator=g, dtype=torch.float64).to(device, dtype)
    elif base_kind == "per_row":
        base = torch.randn(lead + item, generator=g, dtype=torch.float64).to(device, dtype)
    elif base_kind == "leading_one":  # (1, *item): shared, with the rows' dimension kept
        base = torch.randn((1,) * len(lead) + item, generator=g, dtype=torch.float64).to(device, dtype)
    elif base_kind == "broadcast":  # size-1 dims inside the item and over the rows
        shape = tuple(1 if i == len(item) - 1 else s for i, s in enumerate(item))
        base = torch.randn((1,) * len(lead) + shape, generator=g, dtype=torch.float64).to(device, dtype)
    return bank, weights, base


def _grads(fn, bank, weights, base, grad_out):
    out, *grads = run_with_grads(fn, (bank, weights, base), grad_out)
    return out, [g for g in grads if g is not None]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", COMBINE_SHAPES, ids=str)
@pytest.mark.parametrize("layout", ["2d", "1d"])
@pytest.mark.parametrize("base_kind", BASES)
def test_combine_forward_and_gradients_match_reference_float64(device, shape, layout, base_kind):
    T, item, B = shape
    bank, weights, base = _combine_inputs(T, item, B, layout, base_kind, device, seed=T + B)
    out_shape = ((B,) if layout == "2d" else ()) + item
    grad_out = torch.randn(out_shape, dtype=torch.float64, device=device)
    out, grads = _grads(fastprompt.combine, bank, weights, base, grad_out)
    ref, ref_grads = _grads(combine_ref, bank, weights, base, grad_out)
    assert out.shape == out_shape and out.dtype == torch.float64
    assert_close(out, ref, torch.float64)
    for a, b in zip(grads, ref_grads):
        assert a.shape == b.shape
        assert_close(a, b, torch.float64)


class CombineTester(OpTester):
    """The shared op tests (tests/op_harness.py) of fastprompt.combine."""

    prefix = "combine_"
    op = staticmethod(fastprompt.combine)
    reference = staticmethod(combine_ref)
    compile_backend = "aot_eager"  # the default backend: test_combine_compile_default_backend

    def reference_cases(self):
        def low(dtype):
            def build(device):
                bank, weights, base = _combine_inputs(16, (10, 64), 8, "2d", "shared", device, dtype)
                weights = weights.float()  # float32 mixing coefficients with a low-precision bank
                # sums of 16 terms; the weights gradient sums 640 products
                return Sample((bank, weights, base), dtype, {"out": 4.0, 0: 4.0, 1: 64.0, 2: 4.0})
            return build

        return {str(dtype): low(dtype) for dtype in [torch.float32] + LOW_PRECISION}

    def gradcheck_cases(self):
        def case(item, B, base_kind):
            def build(device):
                bank, weights, base = _combine_inputs(3, item, B, "2d", base_kind, device)
                return fastprompt.combine, tuple(t.detach().requires_grad_(True) for t in (bank, weights, base))
            return build

        return {"shared": case((4, 5), 2, "shared"), "per_row": case((7,), 4, "per_row")}

    def opcheck_cases(self):
        def build(device):
            g = _gen(1)
            bank = torch.randn(4, 37, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
            weights = torch.randn(3, 4, generator=g, dtype=torch.float64).to(device).requires_grad_(True)
            cases = [(torch.ops.fastprompt.combine.default, (bank, weights, base))
                     for base in (None, torch.randn(1, 37, dtype=torch.float64, device=device, requires_grad=True),
                                  torch.randn(3, 37, dtype=torch.float64, device=device, requires_grad=True))]
            grad = torch.randn(3, 37, dtype=torch.float64, device=device)
            return cases + [(torch.ops.fastprompt.combine_backward.default, (grad, bank.detach(), weights.detach(), 1))]

        return {"float64": build}

    def non_contiguous_cases(self):
        def build(device):
            g = _gen(3)
            big = torch.randn(20, 9, 6, generator=g, dtype=torch.float64).to(device)
            bank = big[::2].transpose(1, 2)  # (10, 6, 9) strided
            weights = torch.randn(10, 5, generator=g, dtype=torch.float64).to(device).t()  # (5, 10)
            base = torch.randn(9, 6, generator=g, dtype=torch.float64).to(device).t()
            return Sample((bank, weights, base))

        return {"strided": build}

    def empty_cases(self):
        return {"no_elements": lambda device: Sample((torch.randn(3, 0, 5, device=device),
                                                      torch.randn(2, 3, device=device), None), torch.float32),
                "no_rows": lambda device: Sample((torch.randn(3, 4, device=device), torch.randn(0, 3, device=device),
                                                  torch.randn(4, device=device)), torch.float32)}

    def compile_cases(self):
        def case(layout):
            return lambda device: _combine_inputs(4, (5, 7), 3, layout, "shared", device, torch.float32)

        return {layout: case(layout) for layout in ("2d", "1d")}


CombineTester().add_tests(globals())


@pytest.mark.parametrize("device", DEVICES)
def test_combine_deterministic(device):
    bank, weights, base = _combine_inputs(16, (30, 100), 8, "2d", "shared", device, torch.float32)
    grad_out = torch.randn(8, 30, 100, device=device)
    a = _grads(fastprompt.combine, bank, weights, base, grad_out)
    b = _grads(fastprompt.combine, bank, weights, base, grad_out)
    assert torch.equal(a[0], b[0])
    for x, y in zip(a[1], b[1]):
        assert torch.equal(x, y)


def test_combine_compile_default_backend():
    bank, weights, base = _combine_inputs(4, (5, 7), 3, "2d", "per_row", "cpu", torch.float32)
    fn = torch.compile(lambda b, w, s: fastprompt.combine(b, w, s) * 2, fullgraph=True)
    torch.testing.assert_close(fn(bank, weights, base), 2 * fastprompt.combine(bank, weights, base))


@pytest.mark.parametrize("device", DEVICES)
def test_combine_bad_inputs(device):
    bank = torch.randn(3, 4, 5, device=device)
    with pytest.raises(RuntimeError, match="weights"):
        fastprompt.combine(bank, torch.randn(2, 4, device=device))  # wrong T
    with pytest.raises(RuntimeError, match="weights"):
        fastprompt.combine(bank, torch.randn(2, 2, 3, device=device))
    with pytest.raises(RuntimeError, match="base"):
        fastprompt.combine(bank, torch.randn(2, 3, device=device), torch.randn(4, 6, device=device))
    with pytest.raises(RuntimeError, match="base"):
        fastprompt.combine(bank, torch.randn(2, 3, device=device), torch.randn(3, 4, 5, device=device))
    with pytest.raises(RuntimeError, match="base"):
        fastprompt.combine(bank, torch.randn(2, 3, device=device), torch.randn(4, 5, device=device).double())
    with pytest.raises(RuntimeError, match="bank"):
        fastprompt.combine(torch.ones(3, 4, dtype=torch.int64, device=device), torch.randn(2, 3, device=device))
    with pytest.raises(RuntimeError, match="weights"):
        fastprompt.combine(bank, torch.ones(2, 3, dtype=torch.int64, device=device))
    with pytest.raises(RuntimeError, match="bank"):
        fastprompt.combine(torch.randn(0, 4, device=device), torch.randn(2, 0, device=device))
    # the C++ checks, reached without the Python wrapper
    with pytest.raises(RuntimeError, match="weights"):
        torch.ops.fastprompt.combine(bank.reshape(3, 20), torch.randn(2, 4, device=device), None)
    with pytest.raises(RuntimeError, match="base"):
        torch.ops.fastprompt.combine(bank.reshape(3, 20), torch.randn(2, 3, device=device),
                                     torch.randn(3, 20, device=device))


@requires_cuda
def test_combine_different_devices():
    with pytest.raises(RuntimeError, match="weights"):
        fastprompt.combine(torch.randn(3, 4, device="cuda"), torch.randn(2, 3))
    with pytest.raises(RuntimeError, match="base"):
        fastprompt.combine(torch.randn(3, 4, device="cuda"), torch.randn(2, 3, device="cuda"), torch.randn(4))


# ---- merge against peft --------------------------------------------------------------------------
# (method, sign) pairs: the sign election only exists for the TIES methods
METHOD_SIGNS = [(m, "total") for m in METHODS] + [("ties", "frequency"), ("dare_ties", "frequency")]


def _peft_merge(vectors, method, weights, density, sign, dare_masks=None, monkeypatch=None):
    merge_utils = require("peft.utils.merge_utils", "peft")
    tensors = list(vectors)
    if method in ("dare", "dare_ties") and density < 1:
        masks = iter(list(dare_masks))
        monkeypatch.setattr(torch, "bernoulli", lambda p: next(masks).to(p.dtype).reshape(p.shape))
    if method == "task_arithmetic":
        return merge_utils.task_arithmetic(tensors, weights)
    if method == "magnitude_prune":
        return merge_utils.magnitude_prune(tensors, weights, density)
    if method == "ties":
        return merge_utils.ties(tensors, weights, density, sign)
    if method == "dare":
        return merge_utils.dare_linear(tensors, weights, density)
    return merge_utils.dare_ties(tensors, weights, density, sign)


@pytest.mark.filterwarnings("ignore:The density")
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method,sign", METHOD_SIGNS)
@pytest.mark.parametrize("density", [0.1, 0.37, 0.8, 1.0])
def test_merge_matches_peft_float64(device, method, density, sign, monkeypatch):
    g = _gen(7)
    vectors = torch.randn(5, 11, 23, generator=g, dtype=torch.float64).to(device)
    weights = torch.rand(5, generator=g, dtype=torch.float64).to(device) + 0.2
    seed = 1234
    out = fastprompt.merge(vectors, method, weights, density, sign, seed)
    masks = dare_keep_mask(seed, 5, 11 * 23, density, device=device).reshape(5, 11, 23)
    expected = _peft_merge(vectors, method, weights, density, sign, masks, monkeypatch)
    assert out.shape == (11, 23) and out.dtype == torch.float64
    torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
def test_merge_matches_peft_float32(device, method, monkeypatch):
    g = _gen(11)
    vectors = torch.randn(8, 100, 41, generator=g).to(device)
    weights = torch.rand(8, generator=g).to(device)
    out = fastprompt.merge(vectors, method, weights, 0.3, "total", seed=99)
    masks = dare_keep_mask(99, 8, 4100, 0.3, device=device).reshape(8, 100, 41)
    expected = _peft_merge(vectors, method, weights, 0.3, "total", masks, monkeypatch)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method,sign", METHOD_SIGNS)
def test_merge_matches_reference_large_and_ties(device, method, sign):
    # values on a coarse grid: many entries tie with the top-k threshold, across chunk borders
    g = _gen(5)
    vectors = torch.randint(-4, 5, (3, 60001), generator=g).double().to(device)
    weights = torch.tensor([0.5, 1.5, -0.7], dtype=torch.float64, device=device)
    for density in (0.05, 0.5, 0.93):
        out = fastprompt.merge(vectors, method, weights, density, sign, seed=3)
        ref = merge_ref(vectors, method, weights, density, sign, seed=3)
        torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    if method == "magnitude_prune":  # exactly k entries kept per vector
        for t in range(3):
            one = torch.zeros(3, dtype=torch.float64, device=device)
            one[t] = 1
            kept = fastprompt.merge(vectors.abs() + 1, method, one, 0.5)
            assert int((kept != 0).sum()) == int(0.5 * 60001)


@pytest.mark.parametrize("device", DEVICES)
def test_merge_more_than_one_selection_block(device):
    g = _gen(8)
    vectors = torch.randn(2, 1_100_003, generator=g).to(device)
    weights = torch.tensor([1.0, -0.5], device=device)
    for method in ("magnitude_prune", "ties"):
        out = fastprompt.merge(vectors, method, weights, 0.2)
        ref = merge_ref(vectors, method, weights, 0.2)
        torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW_PRECISION, ids=str)
@pytest.mark.parametrize("method", METHODS)
def test_merge_low_precision(device, dtype, method):
    g = _gen(13)
    vectors = torch.randn(6, 50, 37, generator=g).to(device, dtype)
    weights = torch.rand(6, generator=g).to(device)
    out = fastprompt.merge(vectors, method, weights, 0.4, "frequency", seed=17)
    ref = merge_ref(vectors.double(), method, weights.double(), 0.4, "frequency", seed=17)
    assert out.dtype == dtype
    assert_close(out, ref, dtype, 2.0)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
def test_merge_non_contiguous(device, method):
    g = _gen(21)
    vectors = torch.randn(40, 6, 9, generator=g, dtype=torch.float64).to(device)[::3].transpose(1, 2)
    weights = torch.rand(28, generator=g, dtype=torch.float64).to(device)[::2]
    out = fastprompt.merge(vectors, method, weights, 0.5, "total", seed=4)
    ref = merge_ref(vectors, method, weights, 0.5, "total", seed=4)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", METHODS)
def test_merge_empty_single_and_default_weights(device, method):
    out = fastprompt.merge(torch.randn(3, 0, 4, device=device), method, density=0.5, seed=1)
    assert out.shape == (0, 4)
    x = torch.randn(1, 17, dtype=torch.float64, device=device)
    out = fastprompt.merge(x, method, density=0.5, seed=2)
    torch.testing.assert_close(out, merge_ref(x, method, None, 0.5, seed=2))
    x = torch.randn(4, 9, dtype=torch.float64, device=device)
    ones = torch.ones(4, dtype=torch.float64, device=device)
    torch.testing.assert_close(fastprompt.merge(x, method, density=0.6, seed=5),
                               fastprompt.merge(x, method, ones, 0.6, seed=5))


@pytest.mark.parametrize("device", DEVICES)
def test_merge_opcheck(device):
    x = torch.randn(3, 57, device=device)
    w = torch.rand(3, device=device)
    for method in METHODS:
        torch.library.opcheck(torch.ops.fastprompt.merge.default, (x, w, method, 0.4, "total", 12))


# ---- DARE statistics and reproducibility ------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("density", [0.1, 0.5, 0.9])
def test_dare_keep_rate_and_rescale(device, density):
    n = 1_000_000
    x = torch.ones(2, n, device=device)
    w = torch.tensor([1.0, 0.0], device=device)  # the first vector alone
    out = fastprompt.merge(x, "dare", w, density, seed=2024)
    kept = out != 0
    rate = kept.float().mean().item()
    sd = (density * (1 - density) / n) ** 0.5
    assert abs(rate - density) < 5 * sd
    torch.testing.assert_close(out[kept], torch.full_like(out[kept], 1.0 / density))
    # the two vectors draw independent masks
    both = fastprompt.merge(x, "dare", torch.tensor([1.0, 1.0], device=device), density, seed=2024)
    both_kept = (both * density).round()  # 0, 1 or 2 vectors kept per entry
    assert abs((both_kept == 2).float().mean().item() - density ** 2) < 5 * (density ** 2 / n) ** 0.5 + 1e-3


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("method", ["dare", "dare_ties"])
def test_dare_seed_reproducible(device, method):
    x = torch.randn(4, 3001, device=device)
    a = fastprompt.merge(x, method, density=0.3, seed=77)
    b = fastprompt.merge(x, method, density=0.3, seed=77)
    c = fastprompt.merge(x, method, density=0.3, seed=78)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    torch.manual_seed(5)
    d = fastprompt.merge(x, method, density=0.3)
    torch.manual_seed(5)
    e = fastprompt.merge(x, method, density=0.3)
    assert torch.equal(d, e)
    # large and negative seeds are taken modulo 2^64
    assert torch.equal(fastprompt.merge(x, method, density=0.3, seed=-1),
                       fastprompt.merge(x, method, density=0.3, seed=2 ** 64 - 1))


@requires_cuda
@pytest.mark.parametrize("method", METHODS)
def test_merge_cpu_and_cuda_identical(method):
    x = torch.randn(5, 70001, dtype=torch.float64)
    w = torch.rand(5, dtype=torch.float64)
    cpu = fastprompt.merge(x, method, w, 0.35, "total", seed=31)
    gpu = fastprompt.merge(x.cuda(), method, w.cuda(), 0.35, "total", seed=31)
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-12, atol=1e-12)
    if method == "dare":  # the same keep mask, entry for entry
        ones = torch.ones(5, 70001)
        assert torch.equal(fastprompt.merge(ones.cuda(), "dare", density=0.35, seed=31).cpu() != 0,
                           fastprompt.merge(ones, "dare", density=0.35, seed=31) != 0)


# ---- merge bad inputs ----------------------------------------------------------------------------
@pytest.mark.parametrize("device", DEVICES)
def test_merge_bad_inputs(device):
    x = torch.randn(3, 10, device=device)
    for density in (0.0, -0.5, 1.5, float("nan"), "0.5x", None, True):
        with pytest.raises(ValueError, match="density"):
            fastprompt.merge(x, "ties", density=density)
    with pytest.raises(ValueError, match="method"):
        fastprompt.merge(x, "average")
    with pytest.raises(ValueError, match="sign"):
        fastprompt.merge(x, "ties", density=0.5, sign="majority")
    with pytest.raises(RuntimeError, match="weights"):
        fastprompt.merge(x, "ties", torch.ones(4, device=device))
    with pytest.raises(RuntimeError, match="weights"):
        fastprompt.merge(x, "ties", torch.ones(3, 1, device=device))
    with pytest.raises(RuntimeError, match="vectors"):
        fastprompt.merge(torch.ones(3, 10, dtype=torch.int32, device=device), "ties")
    with pytest.raises(RuntimeError, match="vectors"):
        fastprompt.merge(torch.randn(0, 10, device=device), "ties")
    with pytest.raises(RuntimeError, match="not differentiable"):
        fastprompt.merge(x.clone().requires_grad_(True), "task_arithmetic")
    with pytest.raises(TypeError, match="seed"):
        fastprompt.merge(x, "dare", density=0.5, seed=1.5)
    # the C++ checks, reached without the Python wrapper
    w = torch.ones(3, device=device)
    with pytest.raises(RuntimeError, match="density"):
        torch.ops.fastprompt.merge(x, w, "ties", 1.5, "total", 0)
    with pytest.raises(RuntimeError, match="method"):
        torch.ops.fastprompt.merge(x, w, "mean", 0.5, "total", 0)
    with pytest.raises(RuntimeError, match="sign"):
        torch.ops.fastprompt.merge(x, w, "ties", 0.5, "sum", 0)
    with pytest.raises(RuntimeError, match="weights"):
        torch.ops.fastprompt.merge(x, torch.ones(2, device=device), "ties", 0.5, "total", 0)


@requires_cuda
def test_merge_different_devices():
    with pytest.raises(RuntimeError, match="weights"):
        fastprompt.merge(torch.randn(3, 4, device="cuda"), "ties", torch.ones(3), 0.5)
