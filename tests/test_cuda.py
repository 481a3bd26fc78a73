"""CUDA kernels against the CPU kernels (and the float64 reference): every op, extreme inputs,
grids beyond the 65535 limit of gridDim.y, misaligned pointers, grid-stride loops that run more
than once, and one op on more than 2^31 elements (marked `large`). Every test skips without a
GPU (reason "CUDA: ...")."""
import pytest
import torch

import fastprompt
from fastprompt._dtypes import accumulation_dtype
from fastprompt.nn.rational import rational_init
from fastprompt.reference import attention_pool_ref, combine_ref, multispace_project_ref, rational_ref

from conftest import assert_close, requires_cuda

pytestmark = requires_cuda

DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
# CUDA vs CPU kernel (both accumulate in float32 or wider, in different orders)
CPU_TOL = {
    torch.float64: (1e-10, 1e-12),
    torch.float32: (2e-5, 2e-6),
    torch.float16: (2e-3, 2e-3),
    torch.bfloat16: (1.6e-2, 1.6e-2),
}


def close_to_cpu(actual, expected, dtype, scale=1.0, name=""):
    assert actual.device.type == "cuda", name
    assert actual.dtype == expected.dtype and actual.shape == expected.shape, name
    rtol, atol = CPU_TOL[dtype]
    torch.testing.assert_close(actual.cpu().double(), expected.double(), rtol=rtol * scale,
                               atol=atol * scale, msg=lambda m: f"{name}: {m}")


def grads_of(fn, inputs, grad_out):
    """Output and gradients of fn(*inputs) with respect to every input that is not None. The
    leaves alias the inputs (detach, no copy), so a misaligned input stays misaligned."""
    leaves = [t.detach().requires_grad_(True) if t is not None else None for t in inputs]
    out = fn(*leaves)
    wrt = [t for t in leaves if t is not None]
    grads = torch.autograd.grad(out, wrt, grad_out)
    return out.detach(), grads


def on_cuda_misaligned(t):
    """A CUDA copy of t whose data starts one element past a 16-byte boundary."""
    buf = torch.empty(t.numel() + 1, dtype=t.dtype, device="cuda")
    out = buf[1:].view(t.shape).copy_(t)
    assert out.data_ptr() % 16 != 0
    return out


def on_both(fn, inputs, grad_out, dtype, scale=1.0, names=None):
    """Runs fn on CPU copies and on CUDA copies of the inputs (inputs already on CUDA are used as
    they are) and compares outputs and gradients."""
    cpu_in = [t.cpu() if t is not None else None for t in inputs]
    gpu_in = [(t if t.is_cuda else t.cuda()) if t is not None else None for t in inputs]
    out_c, g_c = grads_of(fn, cpu_in, grad_out.cpu())
    out_g, g_g = grads_of(fn, gpu_in, grad_out.cuda())
    close_to_cpu(out_g, out_c, dtype, scale, "output")
    for i, (a, b) in enumerate(zip(g_g, g_c)):
        close_to_cpu(a, b, dtype, scale, f"grad {names[i] if names else i}")
    return out_g, g_g


# ---- CPU vs CUDA agreement, every op -----------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["A", "B"])
@pytest.mark.parametrize("degrees,groups,shape", [
    ((5, 4), 1, (37, 96)),
    ((3, 2), 8, (64, 64)),       # 8 channels per group: vector path
    ((6, 5), 4, (19, 20)),       # 5 channels per group: scalar path
    ((8, 8), 2, (3, 5, 16)),
    ((0, 1), 3, (7, 3)),
])
def test_rational_matches_cpu(dtype, form, degrees, groups, shape):
    gen = torch.Generator().manual_seed(sum(shape) + groups)
    m, n = degrees
    coef_dtype = accumulation_dtype(dtype)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 2).to(dtype)
    a = torch.randn(groups, m + 1, generator=gen, dtype=torch.float64).to(coef_dtype)
    b = torch.randn(groups, n, generator=gen, dtype=torch.float64).to(coef_dtype)
    dy = torch.randn(shape, generator=gen, dtype=torch.float64).to(dtype)
    fn = lambda x, a, b: fastprompt.rational(x, a, b, form)  # noqa: E731
    # coefficient gradients are sums over many elements: allow for the summation order
    on_both(fn, [x, a, b], dy, dtype, scale=4, names=["x", "numerator", "denominator"])
    out, grads = grads_of(fn, [x.cuda(), a.cuda(), b.cuda()], dy.cuda())
    ref, ref_grads = grads_of(lambda x, a, b: rational_ref(x, a, b, form),
                              [x.double(), a.double(), b.double()], dy.double())
    assert_close(out.cpu(), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("B,T,D,K", [(3, 17, 24, 4), (2, 300, 64, 8), (1, 1000, 33, 64), (4, 5, 130, 3)])
def test_attention_pool_matches_cpu(dtype, masked, B, T, D, K):
    gen = torch.Generator().manual_seed(B * T + D + K)
    z = torch.randn(B, T, D, generator=gen, dtype=torch.float64).to(dtype)
    w = (torch.randn(D, K, generator=gen, dtype=torch.float64) / D ** 0.5).to(dtype)
    mask = None
    if masked:
        mask = torch.rand(B, T, generator=gen) > 0.3
        mask[0] = False  # a row with no real token: zeros, never NaN
    dy = torch.randn(B, K, D, generator=gen, dtype=torch.float64).to(dtype)
    fn = lambda z, w: fastprompt.attention_pool(z, w, mask.to(z.device) if masked else None)  # noqa: E731
    out, _ = on_both(fn, [z, w], dy, dtype, scale=4, names=["z", "queries"])
    assert not torch.isnan(out).any()
    ref = attention_pool_ref(z.double(), w.double(), mask)
    assert_close(out.cpu(), ref, dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gate", ["none", "shared", "per_row"])
@pytest.mark.parametrize("bias", [False, True])
def test_multispace_project_matches_cpu(dtype, gate, bias):
    gen = torch.Generator().manual_seed(7)
    rows, d_in, d_out, N = 13, 24, 20, 3
    t = lambda *s: torch.randn(*s, generator=gen, dtype=torch.float64).to(dtype)  # noqa: E731
    x, W = t(rows, d_in), t(N, d_in, d_out) / d_in ** 0.5
    b = t(N, d_out) if bias else None
    logits = {"none": None, "shared": t(N), "per_row": t(rows, N)}[gate]
    dy = t(rows, d_out)
    on_both(fastprompt.multispace_project, [x, W, b, logits], dy, dtype, scale=8,
            names=[n for n, v in zip(["x", "weight", "bias", "gate_logits"], [x, W, b, logits]) if v is not None])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("base_kind", ["none", "shared", "per_row"])
@pytest.mark.parametrize("T,item,B", [(3, (4, 5), 2), (5, (100, 41), 7), (16, (4099,), 3)])
def test_combine_matches_cpu(dtype, base_kind, T, item, B):
    gen = torch.Generator().manual_seed(T + B)
    bank = torch.randn((T,) + item, generator=gen, dtype=torch.float64).to(dtype)
    weights = torch.randn(B, T, generator=gen, dtype=torch.float64).to(dtype)
    base = {"none": None, "shared": torch.randn(item, generator=gen, dtype=torch.float64),
            "per_row": torch.randn((B,) + item, generator=gen, dtype=torch.float64)}[base_kind]
    base = base.to(dtype) if base is not None else None
    dy = torch.randn((B,) + item, generator=gen, dtype=torch.float64).to(dtype)
    out, _ = on_both(fastprompt.combine, [bank, weights, base], dy, dtype, scale=4)
    assert_close(out.cpu(), combine_ref(bank.double(), weights.double(),
                                        base.double() if base is not None else None), dtype, scale=2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method,density", [("task_arithmetic", 1.0), ("magnitude_prune", 0.3),
                                            ("ties", 0.2), ("dare", 0.5), ("dare_ties", 0.4)])
def test_merge_matches_cpu(dtype, method, density):
    gen = torch.Generator().manual_seed(3)
    vectors = torch.randn(4, 33, 70, generator=gen, dtype=torch.float64).to(dtype)
    vectors[1, 0, :10] = vectors[0, 0, :10]  # ties at the threshold are possible
    weights = torch.tensor([1.0, 0.5, -0.25, 2.0])
    cpu = fastprompt.merge(vectors, method, weights=weights, density=density, seed=11)
    gpu = fastprompt.merge(vectors.cuda(), method, weights=weights.cuda(), density=density, seed=11)
    close_to_cpu(gpu, cpu, dtype, scale=2, name=method)


# ---- extreme inputs ----------------------------------------------------------------------------

def _compare_extreme(gpu, cpu, name, rtol, atol, magnitude=None):
    """CUDA vs CPU where values may saturate: no NaN on CUDA; where both are finite, close
    (with ``magnitude``, the sum of the absolute terms that were added up, the absolute tolerance
    scales with it: sums of huge terms of both signs cancel in a different order, and the CPU's
    float64 sums run in long double); where one side is
    infinite, the other has the same sign and is near the limit of its dtype (the CPU's wide
    path for float64 runs in long double, where a value beyond the float64 range converts to
    inf; the GPU's runs in double and saturates at the largest finite value)."""
    limit = torch.finfo(cpu.dtype).max / 16  # a saturated value
    gpu, cpu = gpu.cpu().double(), cpu.double()
    assert not torch.isnan(gpu).any(), f"{name}: NaN on CUDA: {gpu}"
    finite = torch.isfinite(cpu) & torch.isfinite(gpu)
    if magnitude is not None:
        atol = atol * max(magnitude, 1.0)
    torch.testing.assert_close(gpu[finite], cpu[finite], rtol=rtol, atol=atol,
                               msg=lambda m: f"{name}: {m}")
    for a, b in ((gpu, cpu), (cpu, gpu)):
        over = torch.isinf(a)
        if over.any():
            assert (torch.sign(b[over]) == torch.sign(a[over])).all(), name
            assert (b[over].abs() >= limit).all(), f"{name}: {a[over]} vs {b[over]}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("form", ["A", "B"])
@pytest.mark.parametrize("degrees", [(5, 4), (4, 5), (0, 8), (8, 1), (8, 8)])
def test_rational_extreme_inputs_match_cpu(dtype, form, degrees):
    info = torch.finfo(dtype)
    values = [info.max, -info.max, info.tiny, -info.tiny, 0.0, 1.0, -1.0, 1e4, -3e4, 65504.0, 200.0, -255.0]
    if dtype != torch.float16:
        values += [1e30, -1e38, 3e38]
    x = torch.tensor(values, dtype=torch.float64).clamp(-info.max, info.max).to(dtype)
    x = x.repeat(3)[None, :]
    m, n = degrees
    coef_dtype = accumulation_dtype(dtype)
    gen = torch.Generator().manual_seed(m * 10 + n)
    cases = [(torch.randn(1, m + 1, generator=gen), torch.randn(1, n, generator=gen)) for _ in range(8)]
    cases += [(torch.randn(1, m + 1, generator=gen), torch.zeros(1, n)),
              (torch.zeros(1, m + 1), torch.randn(1, n, generator=gen))]
    if degrees == (5, 4):
        cases.append(tuple(c[None] for c in rational_init("gelu", form, (5, 4))))
    # float64 has no wider type on the GPU (the CPU re-evaluates in long double): beyond about
    # 1e150, where powers leave the float64 range, only the absence of NaN is compared
    x_cmp = x[:, x[0].double().abs() <= 1e150] if dtype == torch.float64 else x
    fn = lambda x, a, b: fastprompt.rational(x, a, b, form)  # noqa: E731
    for a, b in cases:
        a, b = a.to(coef_dtype), b.to(coef_dtype)
        if dtype == torch.float64:
            _, g_full = grads_of(fn, [x.cuda(), a.cuda(), b.cuda()], torch.ones_like(x).cuda())
            for name, t in zip(("grad_x", "grad_numerator", "grad_denominator"), g_full):
                assert not torch.isnan(t).any(), f"{name}: NaN on CUDA for a={a}, b={b}"
            assert not torch.isnan(fn(x.cuda(), a.cuda(), b.cuda())).any()
        dy = torch.ones_like(x_cmp)
        out_c, g_c = grads_of(fn, [x_cmp, a, b], dy)
        out_g, g_g = grads_of(fn, [x_cmp.cuda(), a.cuda(), b.cuda()], dy.cuda())
        rtol, atol = CPU_TOL[dtype]
        for name, g, c in (("y", out_g, out_c), ("grad_x", g_g[0], g_c[0])):
            _compare_extreme(g, c, f"{name} a={a} b={b}", rtol * 4, atol)
        magnitude = _coefficient_term_magnitude(fn, x_cmp, a, b)
        _compare_extreme(g_g[1], g_c[1], f"grad_numerator a={a} b={b}", 1e-3, 1e-5, magnitude)
        _compare_extreme(g_g[2], g_c[2], f"grad_denominator a={a} b={b}", 1e-3, 1e-5, magnitude)


def _coefficient_term_magnitude(fn, x, a, b):
    """The largest finite sum over the elements of x (1, E) of |one element's term| in the
    coefficient gradients of fn(x, a, b) with dy = 1, from the CPU: the scale of the rounding
    error of any order of summation."""
    total = torch.zeros(a.numel() + b.numel(), dtype=torch.float64)
    for i in range(x.shape[1]):
        _, (_, ga, gb) = grads_of(fn, [x[:, i:i + 1], a, b], torch.ones_like(x[:, i:i + 1]))
        terms = torch.cat([ga.flatten(), gb.flatten()]).double().abs()
        total += torch.where(torch.isfinite(terms), terms, torch.zeros_like(terms))
    return float(total.max())


@pytest.mark.parametrize("dtype", DTYPES)
def test_attention_pool_extreme_scores_match_cpu(dtype):
    big = 1e4 if dtype == torch.float16 else 1e30
    z = torch.tensor([[[1.0, -2.0], [big, 0.5], [-big, 3.0], [0.0, 0.0]]], dtype=torch.float64).to(dtype)
    w = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64).to(dtype)
    out_c = fastprompt.attention_pool(z, w)
    out_g = fastprompt.attention_pool(z.cuda(), w.cuda())
    assert not torch.isnan(out_g).any()
    close_to_cpu(out_g, out_c, dtype)


# ---- grids beyond 65535 rows / groups; loops that run more than once ----------------------------

def test_rational_more_than_65535_groups():
    groups = 70001  # also more work items than the backward's grid, so its item loop runs twice
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, groups, generator=gen)
    a, b = torch.randn(groups, 4, generator=gen), torch.randn(groups, 3, generator=gen)
    dy = torch.randn(3, groups, generator=gen)
    on_both(lambda x, a, b: fastprompt.rational(x, a, b, "A"), [x, a, b], dy, torch.float32, scale=4)


def test_attention_pool_more_than_65535_rows():
    gen = torch.Generator().manual_seed(1)
    B, T, D, K = 70001, 3, 4, 2
    z, w = torch.randn(B, T, D, generator=gen), torch.randn(D, K, generator=gen)
    mask = torch.rand(B, T, generator=gen) > 0.2
    dy = torch.randn(B, K, D, generator=gen)
    on_both(lambda z, w: fastprompt.attention_pool(z, w, mask.to(z.device)), [z, w], dy, torch.float32,
            scale=8)


def test_multispace_and_combine_more_than_65535_rows():
    gen = torch.Generator().manual_seed(2)
    rows = 70001
    x, W = torch.randn(rows, 4, generator=gen), torch.randn(2, 4, 3, generator=gen)
    bias, logits = torch.randn(2, 3, generator=gen), torch.randn(rows, 2, generator=gen)
    on_both(fastprompt.multispace_project, [x, W, bias, logits], torch.randn(rows, 3, generator=gen),
            torch.float32, scale=8)
    bank, weights = torch.randn(3, 5, generator=gen), torch.randn(rows, 3, generator=gen)
    on_both(fastprompt.combine, [bank, weights, None], torch.randn(rows, 5, generator=gen),
            torch.float32, scale=4)


@pytest.mark.parametrize("method", ["magnitude_prune", "ties"])
def test_merge_more_than_65535_vectors(method):
    gen = torch.Generator().manual_seed(4)
    vectors = torch.randn(70001, 9, generator=gen)
    cpu = fastprompt.merge(vectors, method, density=0.4)
    gpu = fastprompt.merge(vectors.cuda(), method, density=0.4)
    close_to_cpu(gpu, cpu, torch.float32, scale=64, name=method)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float64])
def test_rational_grid_stride_loops_run_more_than_once(dtype):
    # the forward grid covers 8192 blocks x 256 threads x (16 bytes / element size) elements
    n = 8192 * 256 * (16 // torch.empty(0, dtype=dtype).element_size()) * 2 + 37
    gen = torch.Generator().manual_seed(5)
    x = (torch.randn(n, generator=gen) * 3).to(dtype)
    a = torch.randn(1, 6, generator=gen).to(accumulation_dtype(dtype))
    b = torch.randn(1, 5, generator=gen).to(a.dtype)
    dy = torch.randn(n, generator=gen).to(dtype)
    on_both(lambda x, a, b: fastprompt.rational(x, a, b, "B"), [x, a, b], dy, dtype, scale=16)


def test_merge_and_combine_long_vectors():
    gen = torch.Generator().manual_seed(6)
    vectors = torch.randn(3, 3 * 2 ** 20 + 5, generator=gen)
    for method in ("ties", "dare_ties"):
        cpu = fastprompt.merge(vectors, method, density=0.1, seed=5)
        gpu = fastprompt.merge(vectors.cuda(), method, density=0.1, seed=5)
        close_to_cpu(gpu, cpu, torch.float32, name=method)
    weights = torch.randn(4, 3, generator=gen)
    on_both(fastprompt.combine, [vectors, weights, None], torch.randn(4, vectors.shape[1], generator=gen),
            torch.float32, scale=16)


# ---- misaligned inputs ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("groups", [1, 4])
def test_rational_misaligned_input(dtype, groups):
    gen = torch.Generator().manual_seed(8)
    x = (torch.randn(4097, device="cuda", dtype=torch.float64) * 2).to(dtype)[1:]  # storage offset 1
    assert x.data_ptr() % 16 != 0
    coef_dtype = accumulation_dtype(dtype)
    a, b = torch.randn(groups, 6, generator=gen).to(coef_dtype), torch.randn(groups, 5, generator=gen).to(coef_dtype)
    dy = torch.randn(4096, generator=gen).to(dtype)
    on_both(lambda x, a, b: fastprompt.rational(x, a, b, "A"), [x, a, b], dy, dtype, scale=4)
    ref = rational_ref(x.double(), a.cuda().double(), b.cuda().double(), "A")
    assert_close(fastprompt.rational(x, a.cuda(), b.cuda(), "A").cpu(), ref.cpu(), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
def test_combine_misaligned_bank_and_base(dtype):
    gen = torch.Generator().manual_seed(9)
    bank = on_cuda_misaligned(torch.randn(3, 4096, generator=gen).to(dtype))
    base = on_cuda_misaligned(torch.randn(4096, generator=gen).to(dtype))
    weights = torch.randn(2, 3, generator=gen).to(dtype)
    dy = torch.randn(2, 4096, generator=gen).to(dtype)
    on_both(fastprompt.combine, [bank, weights, base], dy, dtype, scale=4)
    odd_bank = on_cuda_misaligned(torch.randn(3, 4095, generator=gen).to(dtype))  # odd size too
    odd_base = on_cuda_misaligned(torch.randn(4095, generator=gen).to(dtype))
    gpu = fastprompt.combine(odd_bank, weights.cuda(), odd_base)
    close_to_cpu(gpu, fastprompt.combine(odd_bank.cpu(), weights, odd_base.cpu()), dtype, scale=4)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("gate", ["shared", "per_row"])
def test_multispace_misaligned_bias(dtype, gate):
    gen = torch.Generator().manual_seed(10)
    N, d_in, d_out = 3, 16, 32
    x = torch.randn(9, d_in, generator=gen).to(dtype)
    W = (torch.randn(N, d_in, d_out, generator=gen) / 4).to(dtype)
    bias = on_cuda_misaligned(torch.randn(N, d_out, generator=gen).to(dtype))
    logits = torch.randn(N, generator=gen).to(dtype) if gate == "shared" else torch.randn(9, N, generator=gen).to(dtype)
    dy = torch.randn(9, d_out, generator=gen).to(dtype)
    out, _ = on_both(fastprompt.multispace_project, [x, W, bias, logits], dy, dtype, scale=8)
    ref = multispace_project_ref(x.double(), W.double(), bias.cpu().double(), logits.double())
    assert_close(out.cpu(), ref, dtype, scale=4)


# ---- reproducibility -----------------------------------------------------------------------------

def test_coefficient_gradients_bitwise_reproducible_and_independent_of_alignment():
    gen = torch.Generator().manual_seed(12)
    buf = torch.randn(64 * 4096 + 8, generator=gen).cuda()
    aligned = buf[:64 * 4096].view(64, 4096)
    shifted = buf[1:64 * 4096 + 1].view(64, 4096).clone()  # same values as a fresh aligned copy
    misaligned = torch.empty(64 * 4096 + 1, device="cuda")[1:].view(64, 4096).copy_(shifted)
    a, b = torch.randn(8, 6, generator=gen).cuda(), torch.randn(8, 5, generator=gen).cuda()
    dy = torch.randn(64, 4096, generator=gen).cuda()
    op = torch.ops.fastprompt.rational_backward.default
    runs = [op(dy, aligned, a, b, "A") for _ in range(3)]
    for r in runs[1:]:
        for t0, t1 in zip(runs[0], r):
            assert torch.equal(t0, t1)
    r0 = op(dy, shifted, a, b, "A")
    r1 = op(dy, misaligned, a, b, "A")
    assert torch.equal(r0[1], r1[1]) and torch.equal(r0[2], r1[2])


# ---- more than 2^31 elements --------------------------------------------------------------------

@pytest.mark.large
def test_rational_more_than_2_31_elements():
    n = 2 ** 31 + 24
    need = 4 * n * 4 + (1 << 30)  # x, y, dy, dx in float32
    free, _ = torch.cuda.mem_get_info()
    if free < need:
        pytest.skip(f"CUDA: needs {need / 2 ** 30:.0f} GiB of free GPU memory, {free / 2 ** 30:.0f} GiB free")
    x = torch.full((n,), 0.5, device="cuda")
    tail = torch.tensor([-1.5, 2.0, 3.25, -0.75, 300.0, 1e20], device="cuda")
    x[-tail.numel():] = tail
    a = torch.tensor([[0.1, 0.9, -0.3, 0.05]], device="cuda")
    b = torch.tensor([[0.4, -0.2]], device="cuda")
    x.requires_grad_(True)
    a.requires_grad_(True)
    b.requires_grad_(True)
    y = fastprompt.rational(x, a, b, "A")
    y.backward(torch.ones_like(y))
    pts = torch.cat([torch.tensor([0.5]), tail.cpu()]).double().requires_grad_(True)
    a64, b64 = a.detach().cpu().double().requires_grad_(True), b.detach().cpu().double().requires_grad_(True)
    yr = rational_ref(pts, a64, b64, "A")
    counts = torch.tensor([n - tail.numel()] + [1] * tail.numel(), dtype=torch.float64)
    (yr * counts).sum().backward()
    torch.testing.assert_close(y.detach()[-tail.numel():].cpu().double(), yr.detach()[1:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(y.detach()[:3].cpu().double(), yr.detach()[:1].expand(3), rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(x.grad[-tail.numel():].cpu().double(), pts.grad[1:], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(a.grad.cpu().double(), a64.grad, rtol=1e-5, atol=1e-3)
    torch.testing.assert_close(b.grad.cpu().double(), b64.grad, rtol=1e-5, atol=1e-3)

