"""Rational activation (grouped Padé unit).

y = P(x) / Q(x), P(x) = sum_{j=0..m} a[g, j] x^j, and
  form "A": Q(x) = 1 + sum_{k=1..n} |b[g, k]| |x|^k
  form "B": Q(x) = 1 + |sum_{k=1..n} b[g, k] x^k|
where channel c of the last dimension uses group g = c // (C / G).
"""
import torch

from fastprompt.ops._checks import check_choice, check_tensor

__all__ = ["rational"]

FORMS = ("A", "B")
MAX_DEGREE = 8


def rational(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, form: str = "A") -> torch.Tensor:
    """Grouped rational activation.

    Args:
        x: (..., C) input, float32/float16/bfloat16/float64, any strides.
        numerator: (G, m + 1) coefficients a[g, j] of x^j, 0 <= m <= 8.
        denominator: (G, n) coefficients b[g, k] of x^(k+1), 1 <= n <= 8.
            G must divide C. Coefficients are float32 or x's dtype (float64 for float64 x).
        form: "A" (safe PAU) or "B".

    Returns:
        (..., C) tensor of x's dtype, computed with float32 (float64 for float64) accumulation.
    """
    check_choice("form", form, FORMS)
    check_tensor("x", x)
    check_tensor("numerator", numerator, dim=2, shape_doc="(groups, m + 1)")
    check_tensor("denominator", denominator, dim=2, shape_doc="(groups, n)")
    for name, t in (("numerator", numerator), ("denominator", denominator)):
        if t.device != x.device:
            raise RuntimeError(f"{name}: expected a tensor on {x.device} (the device of x), got one on {t.device}")
    return torch.ops.fastprompt.rational.default(x, numerator, denominator, form)


@torch.library.register_fake("fastprompt::rational")
def _rational_fake(x, numerator, denominator, form):
    torch._check(x.dim() >= 1, lambda: "x: expected at least one dimension (..., channels)")
    torch._check(numerator.dim() == 2 and denominator.dim() == 2,
                 lambda: "numerator, denominator: expected 2-D (groups, order) tensors")
    torch._check(x.shape[-1] % numerator.shape[0] == 0,
                 lambda: "x: expected the last dimension to be divisible by the number of groups")
    return x.new_empty(x.shape)


@torch.library.register_fake("fastprompt::rational_backward")
def _rational_backward_fake(grad_out, x, numerator, denominator, form):
    return x.new_empty(x.shape), numerator.new_empty(numerator.shape), denominator.new_empty(denominator.shape)
