"""fastprompt.gathered_linear against the float64 reference (gather + bmm)."""
import pytest
import torch

import fastprompt
from fastprompt.reference import gathered_linear_ref

from conftest import DEVICES, LOW_PRECISION, assert_close, requires_cuda
from op_harness import OpTester, Sample, run_with_grads

# (B, T, K, N, A): odd and prime sizes, tiles with remainders (CPU 4 tokens x 8 lanes, CUDA 32),
# one layer for every row, more layers than rows, single elements
SHAPES = [(3, 7, 13, 5, 2), (5, 33, 70, 37, 4), (1, 1, 1, 1, 1), (6, 2, 300, 9, 9), (2, 40, 8, 65, 1)]


def _inputs(shape, device, dtype=torch.float64, bias=True, seed=0, index=None):
    gen = torch.Generator().manual_seed(seed)
    B, T, K, N, A = shape
    x = torch.randn(B, T, K, generator=gen, dtype=torch.float64).to(device, dtype)
    weight = (torch.randn(A, N, K, generator=gen, dtype=torch.float64) / max(K, 1) ** 0.5).to(device, dtype)
    b = torch.randn(A, N, generator=gen, dtype=torch.float64).to(device, dtype) if bias else None
    if index is None:
        index = torch.randint(0, A, (B,), generator=gen)
    return x, weight, b, torch.as_tensor(index, dtype=torch.int64).to(device)


class GatheredLinearTester(OpTester):
    """The shared op tests (tests/op_harness.py) of fastprompt.gathered_linear."""

    op = staticmethod(fastprompt.gathered_linear)
    reference = staticmethod(gathered_linear_ref)

    def reference_cases(self):
        def case(shape, dtype, bias=True, scales=None):
            return lambda device: Sample(_inputs(shape, device, dtype, bias, seed=sum(shape)), dtype, scales or {})

        cases = {f"float64-{s}": case(s, torch.float64) for s in SHAPES}
        cases["float64-nobias"] = case(SHAPES[1], torch.float64, bias=False)
        # the weight gradient sums over B * T terms
        cases.update({f"float32-{s}": case(s, torch.float32, scales={1: 4, 2: 4}) for s in SHAPES[:2]})
        cases.update({f"{d}": case((4, 9, 24, 10, 3), d, scales={1: 4, 2: 4}) for d in LOW_PRECISION})
        return cases

    def gradcheck_cases(self):
        def case(bias):
            def build(device):
                x, w, b, index = _inputs((3, 4, 5, 3, 2), device, bias=bias)
                leaves = (x.requires_grad_(True), w.requires_grad_(True)) + ((b.requires_grad_(True),) if bias else ())
                if bias:
                    return (lambda x, w, b: fastprompt.gathered_linear(x, w, b, index)), leaves
                return (lambda x, w: fastprompt.gathered_linear(x, w, None, index)), leaves
            return build

        return {"bias": case(True), "nobias": case(False)}

    def opcheck_cases(self):
        def build(device):
            x, w, b, index = _inputs((3, 5, 6, 4, 3), device)
            x.requires_grad_(True)
            w.requires_grad_(True)
            b.requires_grad_(True)
            g = torch.randn(3, 5, 4, dtype=torch.float64, device=device)
            op = torch.ops.fastprompt.gathered_linear.default
            return [(op, (x, w, b, index)), (op, (x, w, None, index)),
                    (torch.ops.fastprompt.gathered_linear_backward.default,
                     (g, x.detach(), w.detach(), index, True))]

        return {"float64": build}

    def non_contiguous_cases(self):
        def build(device):
            B, T, K, N, A = 4, 6, 10, 7, 3
            gen = torch.Generator().manual_seed(5)
            x = torch.randn(T, B, 2 * K, generator=gen, dtype=torch.float64).to(device).transpose(0, 1)[..., ::2]
            w = torch.randn(A, K, N, generator=gen, dtype=torch.float64).to(device).transpose(1, 2)
            b = torch.randn(N, A, generator=gen, dtype=torch.float64).to(device).t()
            index = torch.tensor([2, 0, 2, 1, 0, 1, 2, 0], device=device)[::2]
            return Sample((x, w, b, index))

        return {"strided": build}

    def empty_cases(self):
        def case(shape):
            return lambda device: Sample(_inputs(shape, device))

        return {str(s): case(s) for s in [(0, 5, 4, 3, 2), (2, 0, 4, 3, 2), (2, 5, 0, 3, 2), (2, 5, 4, 0, 2)]}

    def compile_cases(self):
        return {"float32": lambda device: _inputs((3, 7, 8, 5, 2), device, torch.float32)}


GatheredLinearTester().add_tests(globals())


@pytest.mark.parametrize("device", DEVICES)
def test_each_row_equals_its_own_linear_layer(device):
    x, w, b, _ = _inputs((5, 9, 12, 7, 3), device, torch.float32)
    index = torch.tensor([2, 0, 2, 1, 0], device=device)
    out = fastprompt.gathered_linear(x, w, b, index)
    for row, a in enumerate(index.tolist()):
        assert_close(out[row], torch.nn.functional.linear(x[row], w[a], b[a]), torch.float32)


@pytest.mark.parametrize("device", DEVICES)
def test_unused_layers_get_zero_gradients(device):
    x, w, b, _ = _inputs((4, 3, 6, 5, 4), device)
    index = torch.tensor([1, 3, 1, 1], device=device)
    _, _, dw, db = run_with_grads(lambda x, w, b: fastprompt.gathered_linear(x, w, b, index), (x, w, b),
                                  torch.randn(4, 3, 5, dtype=torch.float64, device=device))
    assert (dw[[0, 2]] == 0).all() and (db[[0, 2]] == 0).all()
    assert (dw[[1, 3]] != 0).any()


def test_results_do_not_depend_on_thread_count():
    x, w, b, index = _inputs((16, 33, 96, 40, 5), "cpu", torch.float32)
    grad_out = torch.randn(16, 33, 40)
    fn = lambda x, w, b: fastprompt.gathered_linear(x, w, b, index)  # noqa: E731
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = run_with_grads(fn, (x, w, b), grad_out)
        torch.set_num_threads(max(2, threads))
        many = run_with_grads(fn, (x, w, b), grad_out)
    finally:
        torch.set_num_threads(threads)
    for a, c in zip(one, many):
        assert torch.equal(a, c)


def _raises(match, *args, exc=(RuntimeError, ValueError, TypeError)):
    with pytest.raises(exc, match=match):
        fastprompt.gathered_linear(*args)


def test_bad_inputs_name_the_argument():
    x, w, b, index = _inputs((3, 4, 5, 6, 2), "cpu", torch.float32)
    _raises("x", x[0], w, b, index)
    _raises("weight", x, w[0], b, index)
    _raises("weight", x, w[..., :4], b, index)  # in_features differ
    _raises("weight", x, w.double(), b, index)
    _raises("bias", x, w, b[:, :5], index)
    _raises("bias", x, w, b.double(), index)
    _raises("index", x, w, b, index.int())
    _raises("index", x, w, b, index[:2])
    _raises("index", x, w, b, [0, 1, 0])
    _raises(r"index: expected layer indices in \[0, 2\)", x, w, b, torch.tensor([0, 2, 1]))
    _raises(r"index: expected layer indices in \[0, 2\)", x, w, b, torch.tensor([0, -1, 1]))
    with pytest.raises(RuntimeError, match="grad_out"):
        torch.ops.fastprompt.gathered_linear_backward.default(torch.randn(3, 4, 5), x, w, index, True)


@requires_cuda
def test_cuda_matches_cpu_and_is_bitwise_repeatable():
    x, w, b, index = _inputs((7, 45, 70, 33, 4), "cpu", torch.float32)
    grad_out = torch.randn(7, 45, 33)
    fn = lambda x, w, b: fastprompt.gathered_linear(x, w, b, index.to(x.device))  # noqa: E731
    cpu = run_with_grads(fn, (x, w, b), grad_out)
    cuda = run_with_grads(fn, (x.cuda(), w.cuda(), b.cuda()), grad_out.cuda())
    again = run_with_grads(fn, (x.cuda(), w.cuda(), b.cuda()), grad_out.cuda())
    for a, c, d in zip(cpu, cuda, again):
        assert_close(c.cpu(), a, torch.float32, scale=4)
        assert torch.equal(c, d)


@requires_cuda
def test_cuda_grid_loops_over_more_tiles_than_one_launch_covers():
    # 70000 rows of one token: more tiles than gridDim.y could hold, handled by the x-grid loop
    x, w, b, index = _inputs((70000, 1, 8, 4, 3), "cuda", torch.float32)
    assert_close(fastprompt.gathered_linear(x, w, b, index), gathered_linear_ref(x, w, b, index), torch.float32)


@requires_cuda
def test_device_mismatch_names_the_argument():
    x, w, b, index = _inputs((3, 4, 5, 6, 2), "cuda", torch.float32)
    _raises("index", x, w, b, index.cpu())
    _raises("weight", x, w.cpu(), b, index)


@requires_cuda
def test_cuda_index_out_of_range_gives_nan_rows_not_wrong_numbers():
    x, w, b, _ = _inputs((3, 4, 5, 6, 2), "cuda", torch.float32)
    out = fastprompt.gathered_linear(x, w, b, torch.tensor([0, 2, 1], device="cuda"))
    assert torch.isnan(out[1]).all() and torch.isfinite(out[[0, 2]]).all()
