"""The tests every fastprompt op shares, written once.

A test module describes its op with a subclass of :class:`OpTester` (the op, its float64
reference, and the inputs of each shared test) and calls ``Tester().add_tests(globals())``,
which adds these pytest tests to the module, each parametrised over the devices (CUDA cases
skip where no GPU is visible) and over the cases the tester lists:

- ``test_<prefix>matches_reference``: forward and every gradient against the reference run on
  float64 copies of the inputs, within the tolerance of the case's dtype (float64, float32,
  float16, bfloat16); outputs and gradients keep the dtypes of the inputs they belong to;
- ``test_<prefix>one_gradient``: the reference cases with one floating argument at a time
  requiring grad (the others plain tensors), against the reference;
- ``test_<prefix>gradcheck``: ``torch.autograd.gradcheck`` in float64;
- ``test_<prefix>double_backward_refused``: gradients with create_graph=True raise a clear error
  (the backward ops have no derivative; second-order results would be silently wrong);
- ``test_<prefix>opcheck``: ``torch.library.opcheck`` of the registered operators;
- ``test_<prefix>non_contiguous``: strided inputs (at least one tensor not contiguous), against
  the reference;
- ``test_<prefix>empty``: inputs with a zero-size dimension, against the reference; where the
  output is empty every gradient is exactly zero;
- ``test_<prefix>compile_fullgraph``: ``torch.compile(fullgraph=True)`` of a loss on the op,
  loss and gradients equal to eager.

What is specific to one op (edge cases, bad inputs, modules, determinism) stays in its test file,
which can use :func:`run_with_grads` and :meth:`OpTester.check_against_reference` too.
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import pytest
import torch

from conftest import DEVICES, assert_close


def run_with_grads(fn: Callable, args: Sequence, grad_out: torch.Tensor, double: bool = False,
                   grad_of: Optional[int] = None) -> list:
    """fn(*args) with every floating tensor of args as a fresh leaf (float64 copies when
    `double`), backpropagated from grad_out; returns [out, grad of each arg (None for
    non-floating or non-tensor args)]. With `grad_of`, only argument `grad_of` requires grad."""
    leaves = []
    for i, a in enumerate(args):
        if isinstance(a, torch.Tensor) and a.is_floating_point():
            a = a.detach().clone()
            if double:
                a = a.double()
            a.requires_grad_(grad_of is None or i == grad_of)
        leaves.append(a)
    out = fn(*leaves)
    out.backward(grad_out.to(out.dtype))
    grads = [a.grad if isinstance(a, torch.Tensor) and a.requires_grad else None for a in leaves]
    return [out.detach()] + grads


@dataclass
class Sample:
    """Inputs of one case: the op's positional arguments, the dtype whose tolerance applies,
    and tolerance scales for the output ("out") and for the gradient of argument i (i)."""

    args: tuple
    dtype: torch.dtype = torch.float64
    scales: Dict[object, float] = field(default_factory=dict)
    grad_out: Optional[torch.Tensor] = None


def _first_tensor(args):
    return next(a for a in args if isinstance(a, torch.Tensor))


class OpTester:
    """One op under the shared tests. Subclasses set ``op`` and ``reference`` and override the
    case methods they have inputs for; each returns {case id: builder}, a builder taking the
    device and returning what the test needs. A method left empty adds no test."""

    prefix = ""                  # test-name prefix, for files that test several ops
    op: Callable = None          # the public function, e.g. fastprompt.rational
    reference: Callable = None   # its reference (same arguments)
    compile_backend = "inductor"

    def reference_cases(self) -> Dict[str, Callable[[str], Sample]]:
        return {}

    def gradcheck_cases(self) -> Dict[str, Callable[[str], Tuple[Callable, tuple]]]:
        """id -> device -> (fn, float64 inputs requiring grad)."""
        return {}

    def opcheck_cases(self) -> Dict[str, Callable[[str], List[Tuple[object, tuple]]]]:
        """id -> device -> [(operator overload, args), ...]."""
        return {}

    def non_contiguous_cases(self) -> Dict[str, Callable[[str], Sample]]:
        return {}

    def empty_cases(self) -> Dict[str, Callable[[str], Sample]]:
        return {}

    def compile_cases(self) -> Dict[str, Callable[[str], tuple]]:
        """id -> device -> args; the floating tensors among them are differentiated."""
        return {}

    def devices(self, kind: str):
        """The devices of the shared test `kind` (all of DEVICES unless overridden)."""
        return DEVICES

    # ---- checks --------------------------------------------------------------------------------
    def check_against_reference(self, sample: Sample, grad_of: Optional[int] = None) -> list:
        """Forward and gradients of the op against the reference on float64 copies; returns the
        op's [out, grads...] (see run_with_grads; `grad_of`: only that argument requires grad)."""
        args = sample.args
        grad_out = sample.grad_out
        if grad_out is None:
            with torch.no_grad():
                shape = self.op(*args).shape
            grad_out = torch.randn(shape, dtype=torch.float64, device=_first_tensor(args).device)
        got = run_with_grads(self.op, args, grad_out, grad_of=grad_of)
        ref = run_with_grads(self.reference, args, grad_out, double=True, grad_of=grad_of)
        assert got[0].shape == ref[0].shape, "out"
        assert got[0].dtype == _first_tensor(args).dtype, "out"
        assert_close(got[0], ref[0], sample.dtype, scale=sample.scales.get("out", 1.0), msg="out")
        for i, (a, b, inp) in enumerate(zip(got[1:], ref[1:], args)):
            if b is None:
                assert a is None, f"gradient of argument {i}"
                continue
            assert a.shape == b.shape and a.dtype == inp.dtype, f"gradient of argument {i}"
            assert_close(a, b, sample.dtype, scale=sample.scales.get(i, 1.0), msg=f"gradient of argument {i}")
        return got

    # ---- the generated tests -------------------------------------------------------------------
    def add_tests(self, namespace: dict) -> None:
        """Adds the shared tests of this op to a test module's namespace (its globals())."""
        tester = self

        def params(cases):
            return dict(argnames="case", argvalues=list(cases.values()), ids=list(cases.keys()))

        def add(kind, cases, body):
            if not cases:
                return

            @pytest.mark.parametrize("device", tester.devices(kind))
            @pytest.mark.parametrize(**params(cases))
            def test(device, case):
                body(device, case)

            test.__name__ = f"test_{tester.prefix}{kind}"
            namespace[test.__name__] = test

        def matches_reference(device, case):
            tester.check_against_reference(case(device))

        def gradcheck(device, case):
            fn, inputs = case(device)
            assert torch.autograd.gradcheck(fn, inputs)

        def opcheck(device, case):
            for op, args in case(device):
                torch.library.opcheck(op, args)

        def one_gradient(device, case):
            # each floating argument alone requiring grad: the backward computes and returns
            # only what is asked for (a base or bias without grad is skipped) and stays right
            sample = case(device)
            floating = [i for i, a in enumerate(sample.args)
                        if isinstance(a, torch.Tensor) and a.is_floating_point()]
            for i in floating:
                tester.check_against_reference(sample, grad_of=i)

        def double_backward_refused(device, case):
            fn, inputs = case(device)
            leaves = [a for a in inputs if isinstance(a, torch.Tensor) and a.requires_grad]
            with pytest.raises(RuntimeError, match="double backward is not supported"):
                torch.autograd.grad(fn(*inputs).sum(), leaves, create_graph=True)

        def non_contiguous(device, case):
            sample = case(device)
            assert any(isinstance(a, torch.Tensor) and not a.is_contiguous() for a in sample.args)
            tester.check_against_reference(sample)

        def empty(device, case):
            sample = case(device)
            got = tester.check_against_reference(sample)
            if got[0].numel() == 0:
                for g in got[1:]:
                    if g is not None:
                        assert (g == 0).all()

        def compile_fullgraph(device, case):
            args = case(device)
            leaves = [a for a in args if isinstance(a, torch.Tensor) and a.is_floating_point()]
            for a in leaves:
                a.requires_grad_(True)

            def loss(*a):
                return (tester.op(*a) ** 2).sum()

            torch._dynamo.reset()
            compiled = torch.compile(loss, fullgraph=True, backend=tester.compile_backend)
            got = compiled(*args)
            grads = torch.autograd.grad(got, leaves)
            want = loss(*args)
            grads_e = torch.autograd.grad(want, leaves)
            torch.testing.assert_close(got, want)
            for a, b in zip(grads, grads_e):
                torch.testing.assert_close(a, b)

        add("matches_reference", self.reference_cases(), matches_reference)
        add("one_gradient", self.reference_cases(), one_gradient)
        add("gradcheck", self.gradcheck_cases(), gradcheck)
        add("double_backward_refused", self.gradcheck_cases(), double_backward_refused)
        add("opcheck", self.opcheck_cases(), opcheck)
        add("non_contiguous", self.non_contiguous_cases(), non_contiguous)
        add("empty", self.empty_cases(), empty)
        add("compile_fullgraph", self.compile_cases(), compile_fullgraph)
