"""fastprompt.multispace_project and MultiSpaceProjection against the float64 reference."""
import pytest
import torch

import fastprompt
from fastprompt.reference import multispace_project_folded_ref, multispace_project_ref

from conftest import DEVICES, LOW_PRECISION, assert_close, requires_cuda, require
from op_harness import OpTester, Sample, run_with_grads

GATES = ["none", "shared", "per_row"]
# (leading shape, N, d_in, d_out): odd and prime sizes, one fold chunk crossed (d_in*d_out > 4096),
# single elements
SHAPES = [((5,), 3, 7, 11), ((2, 3), 4, 13, 5), ((1,), 1, 1, 1), ((17,), 2, 67, 71), ((3, 1, 2), 5, 2, 3)]


def _inputs(lead, n, d_in, d_out, gate, device, dtype=torch.float64, bias=True, seed=0):
    gen = torch.Generator().manual_seed(seed)

    def rnd(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen, dtype=torch.float64) * scale).to(device, dtype)

    x = rnd(*lead, d_in)
    weight = rnd(n, d_in, d_out, scale=max(d_in, 1) ** -0.5)
    b = rnd(n, d_out) if bias else None
    logits = {"none": None, "shared": rnd(n), "per_row": rnd(*lead, n)}[gate]
    return x, weight, b, logits


def _check_against_reference(x, weight, bias, logits, dtype, scale=1.0, grad_scale=None):
    g = scale if grad_scale is None else grad_scale
    sample = Sample((x, weight, bias, logits), dtype, {"out": scale, 0: g, 1: g, 2: g, 3: g})
    return MultispaceProjectTester().check_against_reference(sample)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("gate", GATES)
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_forward_and_gradients_match_reference_float64(device, shape, gate, bias):
    x, weight, b, logits = _inputs(*shape, gate, device, bias=bias, seed=len(shape[0]) + shape[1])
    _check_against_reference(x, weight, b, logits, torch.float64)


def test_folded_reference_matches_reference():
    for gate in ("none", "shared"):
        x, weight, b, logits = _inputs((6, 2), 4, 9, 5, gate, "cpu")
        torch.testing.assert_close(multispace_project_folded_ref(x, weight, b, logits),
                                   multispace_project_ref(x, weight, b, logits))
    with pytest.raises(ValueError, match="gate_logits"):
        multispace_project_folded_ref(x, weight, b, torch.zeros(6, 2, 4, dtype=torch.float64))


class MultispaceProjectTester(OpTester):
    """The shared op tests (tests/op_harness.py) of fastprompt.multispace_project."""

    op = staticmethod(fastprompt.multispace_project)
    reference = staticmethod(multispace_project_ref)
    compile_backend = "aot_eager"  # the default backend: test_torch_compile_default_backend_module

    def reference_cases(self):
        def float32(gate):
            return lambda device: Sample(_inputs((37,), 4, 96, 53, gate, device, torch.float32), torch.float32,
                                         {0: 10, 1: 10, 2: 10, 3: 10})

        def low(dtype, gate):
            return lambda device: Sample(_inputs((2, 9), 3, 24, 16, gate, device, dtype), dtype,
                                         {0: 4, 1: 4, 2: 4, 3: 4})

        cases = {f"float32-{gate}": float32(gate) for gate in GATES}
        cases.update({f"{dtype}-{gate}": low(dtype, gate) for dtype in LOW_PRECISION for gate in GATES})
        return cases

    def gradcheck_cases(self):
        def case(gate, bias):
            def build(device):
                x, weight, b, logits = _inputs((2, 3), 3, 4, 5, gate, device)
                x.requires_grad_(True)
                weight.requires_grad_(True)
                if not bias:
                    return (lambda a, w: fastprompt.multispace_project(a, w, None, logits)), (x, weight)
                args = [b.requires_grad_(True)] + ([logits.requires_grad_(True)] if logits is not None else [])
                return (lambda a, w, *rest: fastprompt.multispace_project(a, w, *rest)), (x, weight, *args)
            return build

        return {f"{gate}-{bias}": case(gate, bias) for gate in GATES for bias in ("bias", "nobias")}

    def opcheck_cases(self):
        def case(gate):
            def build(device):
                x, weight, b, logits = _inputs((3, 2), 3, 6, 5, gate, device)
                for t in (x, weight, b, logits):
                    if t is not None:
                        t.requires_grad_(True)
                op = torch.ops.fastprompt.multispace_project.default
                out, saved = op(x, weight, b, logits)
                return [(op, (x, weight, b, logits)), (op, (x, weight, None, logits)),
                        (torch.ops.fastprompt.multispace_project_backward.default,
                         (torch.randn_like(out), x.detach(), weight.detach(), b.detach(),
                          None if logits is None else logits.detach(), saved))]
            return build

        return {gate: case(gate) for gate in GATES}

    def non_contiguous_cases(self):
        def case(gate):
            def build(device):
                gen = torch.Generator().manual_seed(5)
                n, d_in, d_out = 3, 10, 7
                x = torch.randn(6, 4, 2 * d_in, generator=gen, dtype=torch.float64).to(device).transpose(0, 1)[..., ::2]
                weight = torch.randn(d_out, n, d_in, generator=gen, dtype=torch.float64).to(device).permute(1, 2, 0)
                b = torch.randn(d_out, n, generator=gen, dtype=torch.float64).to(device).t()
                logits = {"none": None,
                          "shared": torch.randn(2 * n, generator=gen, dtype=torch.float64).to(device)[::2],
                          "per_row": torch.randn(n, 6, 4, generator=gen, dtype=torch.float64).to(device).permute(2, 1, 0)}[gate]
                assert not x.is_contiguous() and not weight.is_contiguous() and not b.is_contiguous()
                assert logits is None or not logits.is_contiguous()
                return Sample((x, weight, b, logits))
            return build

        return {gate: case(gate) for gate in GATES}

    def empty_cases(self):
        def case(shape, gate):
            return lambda device: Sample(_inputs(*shape, gate, device))

        shapes = [((0,), 3, 4, 5), ((2, 0), 3, 4, 5), ((4,), 2, 0, 3), ((4,), 2, 3, 0)]
        return {f"{gate}-{shape}": case(shape, gate) for gate in GATES for shape in shapes}

    def compile_cases(self):
        return {gate: (lambda device, gate=gate: _inputs((2, 5), 3, 8, 6, gate, device, torch.float32))
                for gate in GATES}


MultispaceProjectTester().add_tests(globals())


@pytest.mark.parametrize("gate", ["shared", "per_row"])
def test_results_do_not_depend_on_thread_count(gate):
    x, weight, b, logits = _inputs((300,), 4, 70, 90, gate, "cpu", torch.float32)
    grad_out = torch.randn(300, 90)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_with_grads(fastprompt.multispace_project, (x, weight, b, logits), grad_out)
        torch.set_num_threads(max(2, threads))
        many = run_with_grads(fastprompt.multispace_project, (x, weight, b, logits), grad_out)
    finally:
        torch.set_num_threads(threads)
    # the fused kernels are deterministic; the BLAS products may split differently per thread count
    for a, c in zip(one, many):
        torch.testing.assert_close(a, c)
    again = run_with_grads(fastprompt.multispace_project, (x, weight, b, logits), grad_out)
    for a, c in zip(many, again):
        assert torch.equal(a, c)


def test_torch_compile_default_backend_module():
    torch.manual_seed(0)
    mod = fastprompt.nn.MultiSpaceProjection(8, 6, 3, gate="per_row")
    x = torch.randn(4, 8)
    compiled = torch.compile(mod, fullgraph=True)
    out = compiled(x)
    out.sum().backward()
    torch.testing.assert_close(out, mod(x))
    assert mod.weight.grad is not None and mod.gate_net.weight.grad is not None


def _raises(match, *args, exc=(RuntimeError, ValueError)):
    with pytest.raises(exc, match=match):
        fastprompt.multispace_project(*args)


def test_bad_inputs_name_the_argument():
    x = torch.randn(5, 4)
    w = torch.randn(3, 4, 6)
    b = torch.randn(3, 6)
    _raises("weight", x, torch.randn(4, 6))              # not 3-D
    _raises("x", torch.randn(5, 7), w)                    # d_in mismatch
    _raises("bias", x, w, torch.randn(3, 5))
    _raises("bias", x, w, torch.randn(6))
    _raises("gate_logits", x, w, b, torch.randn(4))       # neither (N,) ...
    _raises("gate_logits", x, w, b, torch.randn(4, 3))    # ... nor x.shape[:-1] + (N,)
    _raises("gate_logits", x, w, b, torch.randn(5, 1, 3))
    _raises("weight", x, w.double())                      # dtype mismatch
    _raises("bias", x, w, b.half())
    _raises("gate_logits", x, w, b, torch.randn(3, dtype=torch.float64))
    _raises("x", torch.ones(5, 4, dtype=torch.int64), w)
    _raises("weight", x, torch.randn(0, 4, 6))
    # the C++ kernels check too, with the same wording
    op = torch.ops.fastprompt.multispace_project.default
    with pytest.raises(RuntimeError, match="gate_logits"):
        op(x, w, b, torch.randn(4, 3))
    with pytest.raises(RuntimeError, match="bias"):
        op(x, w, torch.randn(2, 6), None)
    with pytest.raises(RuntimeError, match="x"):
        op(torch.randn(5, 3), w, None, None)
    with pytest.raises(RuntimeError, match="weight"):
        op(x, w.double(), None, None)
    with pytest.raises(RuntimeError, match="grad_out"):
        out, saved = op(x, w, b, None)
        torch.ops.fastprompt.multispace_project_backward.default(torch.randn(5, 5), x, w, b, None, saved)


@requires_cuda
def test_device_mismatch_names_the_argument():
    x = torch.randn(5, 4, device="cuda")
    _raises("weight", x, torch.randn(3, 4, 6))
    _raises("bias", x, torch.randn(3, 4, 6, device="cuda"), torch.randn(3, 6))
    _raises("gate_logits", x, torch.randn(3, 4, 6, device="cuda"), None, torch.randn(3))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("gate", ["shared", "per_row"])
@pytest.mark.parametrize("bias", [True, False])
def test_module(device, gate, bias):
    torch.manual_seed(0)
    mod = fastprompt.nn.MultiSpaceProjection(12, 7, 4, gate=gate, bias=bias).to(device)
    assert mod.weight.shape == (4, 12, 7)
    assert (mod.bias is not None) == bias
    if gate == "shared":
        assert mod.gate_logits.shape == (4,) and (mod.gate_logits == 0).all()
    else:
        assert mod.gate_logits is None and mod.gate_net.weight.shape == (4, 12)
    assert mod.weight.abs().max() <= 12 ** -0.5
    x = torch.randn(2, 3, 12, device=device, requires_grad=True)
    out = mod(x)
    assert out.shape == (2, 3, 7)
    torch.testing.assert_close(out, multispace_project_ref(x, mod.weight, mod.bias, mod.gates(x)),
                               rtol=2e-4, atol=2e-5)
    out.square().sum().backward()
    for p in mod.parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all()
    assert "num_spaces=4" in repr(mod)


def test_module_bad_arguments():
    with pytest.raises(ValueError, match="gate"):
        fastprompt.nn.MultiSpaceProjection(4, 4, 2, gate="per_token")
    with pytest.raises(ValueError, match="num_spaces"):
        fastprompt.nn.MultiSpaceProjection(4, 4, 0)
    with pytest.raises(ValueError, match="d_in"):
        fastprompt.nn.MultiSpaceProjection(0, 4, 2)
    mod = fastprompt.nn.MultiSpaceProjection(4, 3, 2)
    with pytest.raises(ValueError, match="x"):
        mod(torch.randn(2, 5))


def test_random_shapes_match_reference():
    hypothesis = require("hypothesis")
    st = hypothesis.strategies

    @hypothesis.settings(max_examples=25, deadline=None, derandomize=True)
    @hypothesis.given(m=st.integers(0, 40), n=st.integers(1, 9), d_in=st.integers(1, 70),
                      d_out=st.integers(1, 70), gate=st.sampled_from(GATES), bias=st.booleans(),
                      seed=st.integers(0, 2 ** 16))
    def check(m, n, d_in, d_out, gate, bias, seed):
        x, weight, b, logits = _inputs((m,), n, d_in, d_out, gate, "cpu", bias=bias, seed=seed)
        _check_against_reference(x, weight, b, logits, torch.float64)

    check()


def test_ept_prompt_rejects_both_gates_like_the_reference():
    from fastprompt.nn.prompt import ept_prompt
    from fastprompt.reference import ept_prompt_ref

    g = torch.Generator().manual_seed(0)
    m, l, r, d, n = 3, 5, 2, 4, 2
    args = [torch.randn(*s, generator=g) for s in [(m, d), (l, r), (r, d), (n, d, d), (n, d)]]
    gates = dict(gate_logits=torch.randn(n, generator=g), gate_weight=torch.randn(n, d, generator=g),
                 gate_bias=torch.randn(n, generator=g))
    for fn in (ept_prompt, ept_prompt_ref):
        with pytest.raises(ValueError, match="gate_logits, gate_weight"):
            fn(*args, **gates)
    module = fastprompt.nn.EPTPrompt(m, l, r, d, num_spaces=n, gate="per_row")
    module.projection.gate_logits = torch.nn.Parameter(torch.zeros(n))  # both gates present
    with pytest.raises(ValueError, match="gate_logits, gate_weight"):
        module()
