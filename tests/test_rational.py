"""Rational activation: kernels vs the float64 reference, gradients, registration, edge cases."""
import pytest
import torch

import fastprompt
from fastprompt._dtypes import accumulation_dtype
from fastprompt.nn import RationalActivation
from fastprompt.nn.rational import _table, rational_init
from fastprompt.reference import rational_ref

from conftest import DEVICES, HAS_CUDA, LOW_PRECISION, TOLERANCES, assert_close, requires_cuda, restore_threads  # noqa: F401
from op_harness import OpTester, Sample, run_with_grads

DEGREES = [(5, 4), (3, 2), (6, 5), (0, 1), (8, 8), (2, 7)]


def make_inputs(shape, groups, degrees, dtype, device, scale=2.0, seed=None):
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    m, n = degrees
    coef_dtype = accumulation_dtype(dtype)
    x = (torch.randn(shape, generator=gen, dtype=torch.float64) * scale).to(device, dtype)
    a = torch.randn(groups, m + 1, generator=gen, dtype=torch.float64).to(device, coef_dtype)
    b = torch.randn(groups, n, generator=gen, dtype=torch.float64).to(device, coef_dtype)
    return x, a, b


def reference_with_grads(x, a, b, form, grad_out):
    return run_with_grads(lambda *t: rational_ref(*t, form), (x, a, b), grad_out, double=True)


def kernel_with_grads(x, a, b, form, grad_out):
    return run_with_grads(lambda *t: fastprompt.rational(*t, form), (x, a, b), grad_out)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("form", ["A", "B"])
@pytest.mark.parametrize("degrees", DEGREES)
@pytest.mark.parametrize("groups", [1, 3])
def test_forward_and_gradients_match_reference(device, dtype, form, degrees, groups):
    # odd sizes: 5 x 7 x (groups * 13) exercises vector tails and group boundaries
    x, a, b = make_inputs((5, 7, groups * 13), groups, degrees, dtype, device)
    grad_out = torch.randn(x.shape, dtype=torch.float64).to(device, dtype)
    y, gx, ga, gb = kernel_with_grads(x, a, b, form, grad_out)
    ry, rgx, rga, rgb = reference_with_grads(x, a, b, form, grad_out)
    assert y.dtype == dtype and gx.dtype == dtype and ga.dtype == a.dtype and gb.dtype == b.dtype
    representable = (ry.abs() < torch.finfo(dtype).max / 4) & (rgx.abs() < torch.finfo(dtype).max / 4)
    assert_close(y[representable], ry[representable], dtype)
    assert_close(gx[representable], rgx[representable], dtype, scale=4.0)
    # coefficient gradients are float32 (or float64) sums over many elements
    coef_dtype = accumulation_dtype(dtype)
    scale = 1.0 if dtype in (torch.float64, torch.float32) else 0.5
    assert_close(ga, rga, coef_dtype, scale=20 * scale * (x.numel() ** 0.5))
    assert_close(gb, rgb, coef_dtype, scale=20 * scale * (x.numel() ** 0.5))


class RationalTester(OpTester):
    """The shared op tests (tests/op_harness.py) of fastprompt.rational."""

    op = staticmethod(fastprompt.rational)
    reference = staticmethod(rational_ref)
    compile_backend = "aot_eager"  # the default backend is covered by the module test below

    def gradcheck_cases(self):
        def case(form, degrees, groups):
            def build(device):
                x, a, b = make_inputs((3, groups * 5), groups, degrees, torch.float64, device)
                inputs = tuple(t.requires_grad_(True) for t in (x, a, b))
                return (lambda x, a, b: fastprompt.rational(x, a, b, form)), inputs
            return build

        return {f"{form}-{degrees}-g{groups}": case(form, degrees, groups) for form in ("A", "B")
                for degrees, groups in [((5, 4), 1), ((3, 2), 2), ((0, 3), 1), ((4, 4), 3)]}

    def opcheck_cases(self):
        def case(dtype):
            def build(device):
                x, a, b = make_inputs((4, 6), 2, (5, 4), dtype, device)
                for t in (x, a, b):
                    t.requires_grad_(True)
                g = torch.randn_like(x)
                return [(torch.ops.fastprompt.rational.default, (x, a, b, "A")),
                        (torch.ops.fastprompt.rational_backward.default,
                         (g, x.detach(), a.detach(), b.detach(), "B"))]
            return build

        return {str(dtype): case(dtype) for dtype in (torch.float32, torch.float64, torch.bfloat16)}

    def non_contiguous_cases(self):
        def build(device):
            base, a_full, b_full = make_inputs((9, 24), 3, (5, 4), torch.float32, device)
            x = base.t().contiguous().t()[1:8:2, :]          # column-major and strided rows
            a = a_full.t().contiguous().t()                  # non-contiguous coefficients
            b = torch.cat([b_full, b_full], 1)[:, ::2]
            return Sample((x, a, b, "A"), torch.float32, {0: 4, 1: 20, 2: 20})

        return {"strided": build}

    def empty_cases(self):
        def case(shape):
            def build(device):
                groups = 2 if shape[-1] else 1
                x, a, b = make_inputs(shape, groups, (5, 4), torch.float32, device)
                return Sample((x, a, b, "A"), torch.float32)
            return build

        return {str(shape): case(shape) for shape in [(0, 8), (3, 0), (0,)]}

    def compile_cases(self):
        return {"float32": lambda device: make_inputs((4, 12), 3, (5, 4), torch.float32, device) + ("B",)}


RationalTester().add_tests(globals())


@pytest.mark.parametrize("device", DEVICES)
def test_coefficient_gradients_are_bitwise_reproducible(device, restore_threads):
    x, a, b = make_inputs((64, 4099), 1, (5, 4), torch.float32, device)
    g = torch.randn_like(x)
    runs = []
    for threads in (1, 2, 1):
        torch.set_num_threads(threads)
        runs.append(torch.ops.fastprompt.rational_backward.default(g, x, a, b, "A"))
    for other in runs[1:]:
        for t0, t1 in zip(runs[0], other):
            assert torch.equal(t0, t1)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.float64])
@pytest.mark.parametrize("form", ["A", "B"])
@pytest.mark.parametrize("degrees", [(5, 4), (4, 5), (0, 8), (8, 1), (8, 8)])
def test_no_nan_from_finite_input(device, dtype, form, degrees):
    info = torch.finfo(dtype)
    values = [info.max, -info.max, info.tiny, -info.tiny, 0.0, 1.0, -1.0, 1e4, -3e4, 65504.0]
    if dtype != torch.float16:
        values += [1e30, -1e38, 3e38]
    x = torch.tensor(values, dtype=torch.float64).clamp(-info.max, info.max).to(device, dtype)
    x = x.repeat(3)[None, :]  # long enough for full vectors and tails
    m, n = degrees
    coef_dtype = accumulation_dtype(dtype)
    for a, b in [
        (torch.randn(1, m + 1), torch.randn(1, n)),
        (torch.randn(1, m + 1), torch.zeros(1, n)),      # Q == 1: y = P(x) can only overflow
        (torch.zeros(1, m + 1), torch.randn(1, n)),
        (rational_init("gelu", form, (5, 4))[0][None] if degrees == (5, 4) else torch.randn(1, m + 1),
         rational_init("gelu", form, (5, 4))[1][None] if degrees == (5, 4) else torch.randn(1, n)),
    ]:
        a, b = a.to(device, coef_dtype), b.to(device, coef_dtype)
        y, gx, ga, gb = kernel_with_grads(x, a, b, form, torch.ones_like(x))
        for name, t in (("y", y), ("grad_x", gx), ("grad_numerator", ga), ("grad_denominator", gb)):
            assert not torch.isnan(t).any(), f"{name} has NaN for a={a}, b={b}: {t}"
        if dtype != torch.float64:
            # for |x| <= 1e30, x^8 stays inside float64, so the straight-formula reference is exact
            # enough; beyond that only the absence of NaN is checked
            ref = rational_ref(x.double(), a.double(), b.double(), form)
            finite = torch.isfinite(ref) & (ref.abs() < info.max / 2) & (x.double().abs() <= 1e30)
            assert_close(y.double()[finite], ref[finite].to(dtype).double(), dtype, scale=4)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_identity_is_exact_for_every_16_bit_value(device, dtype):
    bits = torch.arange(-32768, 32768, dtype=torch.int32).to(torch.int16)
    x = bits.view(dtype).to(device)
    x = x[torch.isfinite(x)]
    a = torch.tensor([[0.0, 1.0]], device=device)
    b = torch.zeros(1, 1, device=device)
    y = fastprompt.rational(x, a, b, "A")
    assert torch.equal(y, x)  # value equality: -0.0 comes back as +0.0
    nonzero = x != 0
    assert torch.equal(y[nonzero].view(torch.int16), x[nonzero].view(torch.int16))


@pytest.mark.parametrize("device", DEVICES)
def test_mixed_coefficient_dtype(device):
    # bfloat16 activations with float32 master coefficients; gradients keep each tensor's dtype
    x, a, b = make_inputs((6, 16), 2, (5, 4), torch.bfloat16, device)
    same = [t.to(torch.bfloat16) for t in (a, b)]
    for coef in ((a, b), same):
        y, gx, ga, gb = kernel_with_grads(x, coef[0], coef[1], "A", torch.ones_like(x))
        assert ga.dtype == coef[0].dtype and gb.dtype == coef[1].dtype
        assert_close(y, rational_ref(x.double(), coef[0].double(), coef[1].double(), "A"), torch.bfloat16)


def test_torch_compile_fullgraph():
    torch._dynamo.reset()
    model = torch.nn.Sequential(torch.nn.Linear(12, 12), RationalActivation(3, (5, 4), "A", "gelu"), torch.nn.Linear(12, 2))
    x = torch.randn(4, 12)
    compiled = torch.compile(model, fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    ref = model(x)
    ref.sum().backward()
    torch.testing.assert_close(out, ref)
    for g, p in zip(grads, model.parameters()):
        torch.testing.assert_close(g, p.grad)


@pytest.mark.parametrize(
    "args,kwargs,error,match",
    [
        ((torch.randn(4, 6), torch.randn(2, 6, dtype=torch.float64), torch.randn(2, 4, dtype=torch.float64)), {}, RuntimeError, "numerator: expected coefficients of dtype float32"),
        ((torch.randn(4, 6), torch.randn(2, 6).int(), torch.randn(2, 4)), {}, RuntimeError, "numerator: expected a floating tensor"),
        ((torch.randn(4, 6), torch.randn(2, 6), torch.randn(2, 4).half()), {}, RuntimeError, "denominator: expected the dtype of numerator"),
        ((torch.randn(4, 6), torch.randn(6), torch.randn(2, 4)), {}, RuntimeError, r"numerator: expected shape \(groups, m \+ 1\)"),
        ((torch.randn(4, 6), torch.randn(4, 6), torch.randn(4, 4)), {}, RuntimeError, r"x: expected the last dimension \(6\) to be divisible by the number of groups \(4\)"),
        ((torch.randn(4, 6), torch.randn(2, 10), torch.randn(2, 4)), {}, RuntimeError, r"numerator: expected order m in \[0, 8\]"),
        ((torch.randn(4, 6), torch.randn(2, 6), torch.randn(2, 0)), {}, RuntimeError, r"denominator: expected order n in \[1, 8\]"),
        ((torch.randn(4, 6), torch.randn(2, 6), torch.randn(2, 9)), {}, RuntimeError, r"denominator: expected order n in \[1, 8\]"),
        ((torch.randn(4, 6), torch.randn(2, 6), torch.randn(3, 4)), {}, RuntimeError, "denominator: expected 2 groups"),
        ((torch.randn(4, 6), torch.randn(2, 6, device="meta"), torch.randn(2, 4)), {}, RuntimeError, "numerator: expected a tensor on cpu"),
        ((torch.randn(4, 6).int(), torch.randn(2, 6), torch.randn(2, 4)), {}, RuntimeError, "x: expected a floating tensor"),
        ((torch.randn(4, 6), torch.randn(2, 6), torch.randn(2, 4)), {"form": "C"}, ValueError, "form: expected one of"),
    ],
)
def test_bad_input_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        fastprompt.rational(*args, **kwargs)


def test_bad_input_errors_from_the_op_itself():
    # the C++ checks hold without the Python wrapper too
    with pytest.raises(RuntimeError, match='form: expected "A" or "B"'):
        torch.ops.fastprompt.rational.default(torch.randn(2, 4), torch.randn(1, 3), torch.randn(1, 2), "Z")
    with pytest.raises(RuntimeError, match="grad_out: expected shape"):
        torch.ops.fastprompt.rational_backward.default(torch.randn(3), torch.randn(2, 4), torch.randn(1, 3), torch.randn(1, 2), "A")


@requires_cuda
def test_devices_must_match_cuda():
    with pytest.raises(RuntimeError, match="numerator: expected a tensor on cuda"):
        fastprompt.rational(torch.randn(2, 4, device="cuda"), torch.randn(1, 3), torch.randn(1, 2, device="cuda"))


# ---- module and fitted initialisations --------------------------------------------------------

def test_fit_table_covers_every_activation_form_and_order():
    table = _table()
    for name in ("gelu", "relu", "leaky_relu", "silu", "tanh", "sigmoid", "identity"):
        for form in ("A", "B"):
            for order in ("3,2", "5,4", "6,5"):
                entry = table[name][form][order]
                m, n = map(int, order.split(","))
                assert len(entry["numerator"]) == m + 1 and len(entry["denominator"]) == n
                assert 0 <= entry["max_abs_error"] < 0.1


@pytest.mark.parametrize("name", ["gelu", "relu", "leaky_relu", "silu", "tanh", "sigmoid", "identity"])
@pytest.mark.parametrize("form", ["A", "B"])
def test_module_initialisation_reproduces_recorded_fit_error(name, form):
    from fastprompt.nn.rational_fit import ACTIVATIONS

    act = RationalActivation(num_groups=2, degrees=(5, 4), form=form, init=name, dtype=torch.float64)
    x = torch.linspace(-3, 3, 4001, dtype=torch.float64)[None].repeat(2, 1).t().contiguous()
    err = (act(x) - ACTIVATIONS[name](x)).abs().max().item()
    recorded = _table()[name][form]["5,4"]["max_abs_error"]
    assert err <= recorded * 1.01 + 1e-12
    assert act.numerator.shape == (2, 6) and act.denominator.shape == (2, 4)


def test_fit_procedure_matches_table():
    from fastprompt.nn.rational_fit import fit

    entry = fit("tanh", "A", 3, 2)
    assert entry["max_abs_error"] <= _table()["tanh"]["A"]["3,2"]["max_abs_error"] * 1.05 + 1e-9


def test_module_trains_and_groups_are_independent():
    torch.manual_seed(0)
    act = RationalActivation(num_groups=2, degrees=(3, 2), form="B", init="identity")
    x = torch.randn(64, 4)
    target = torch.cat([torch.tanh(x[:, :2]), x[:, 2:]], 1)
    opt = torch.optim.Adam(act.parameters(), lr=3e-2)
    first = None
    for _ in range(60):
        opt.zero_grad()
        loss = (act(x) - target).pow(2).mean()
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    assert loss.item() < 0.2 * first
    assert "num_groups=2" in repr(act)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"init": "swish"}, "init: expected one of"),
        ({"form": "C"}, "form: expected one of"),
        ({"degrees": (9, 4)}, "degrees: expected 0 <= m <= 8"),
        ({"degrees": (2, 2)}, r"degrees: no fitted 'gelu' initialisation for orders \(2,2\)"),
        ({"num_groups": 0}, "num_groups: expected a positive int"),
    ],
)
def test_module_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RationalActivation(**kwargs)
