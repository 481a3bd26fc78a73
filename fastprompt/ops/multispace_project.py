"""Multi-space projection with gating.

y = sum_k softmax(gate_logits)_k (x @ weight[k] + bias[k]) for x (..., d_in), weight
(N, d_in, d_out), bias (N, d_out), and gate logits shared (N,), per row (..., N) or None
(uniform 1/N).
"""
import torch

from fastprompt.ops._checks import check_fake_dims, check_tensor

__all__ = ["multispace_project"]


def _check_inputs(x, weight, bias, gate_logits):
    check_tensor("x", x)
    check_tensor("weight", weight, dim=3, shape_doc="(num_spaces, d_in, d_out)")
    if x.dim() < 1:
        raise RuntimeError(f"x: expected shape (..., d_in) with at least 1 dim, got {tuple(x.shape)}")
    n, d_in, d_out = weight.shape
    if n < 1:
        raise RuntimeError(f"weight: expected at least one space (num_spaces >= 1), got {tuple(weight.shape)}")
    if x.shape[-1] != d_in:
        raise RuntimeError(
            f"x: expected shape (..., {d_in}) with the last dimension equal to weight.shape[1], "
            f"got {tuple(x.shape)}")
    for name, t in (("weight", weight), ("bias", bias), ("gate_logits", gate_logits)):
        if t is None:
            continue
        if name != "weight":
            check_tensor(name, t)
        if t.dtype != x.dtype:
            raise RuntimeError(f"{name}: expected dtype {x.dtype} (the dtype of x), got {t.dtype}")
        if t.device != x.device:
            raise RuntimeError(f"{name}: expected a tensor on {x.device} (the device of x), got one on {t.device}")
    if bias is not None and tuple(bias.shape) != (n, d_out):
        raise RuntimeError(f"bias: expected shape ({n}, {d_out}) = (num_spaces, d_out), got {tuple(bias.shape)}")
    if gate_logits is not None:
        shared = tuple(gate_logits.shape) == (n,)
        per_row = tuple(gate_logits.shape) == tuple(x.shape[:-1]) + (n,)
        if not (shared or per_row):
            raise RuntimeError(
                f"gate_logits: expected shape ({n},) (shared) or {tuple(x.shape[:-1]) + (n,)} "
                f"(x.shape[:-1] + (num_spaces,), per row), got {tuple(gate_logits.shape)}")


def multispace_project(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor = None,
                       gate_logits: torch.Tensor = None) -> torch.Tensor:
    """Project x into N spaces and mix the projections with softmax gates.

    Args:
        x: (..., d_in), float32/float16/bfloat16/float64, any strides, any leading shape
            (numel 0 included).
        weight: (N, d_in, d_out), one projection per space, x's dtype.
        bias: optional (N, d_out), x's dtype.
        gate_logits: optional gate logits in x's dtype: (N,) shared by every row, or
            x.shape[:-1] + (N,) one gate per row. None means uniform gates 1/N.

    Returns:
        (..., d_out) in x's dtype: sum_k softmax(gate_logits)_k (x @ weight[k] + bias[k]).

    A shared gate (or None) folds the weights first (W_eff = sum_k g_k weight[k]) and runs one
    matrix product; per-row gates run one product per space into an (N, rows, d_out) buffer and mix
    the N projections in a fused pass. Differentiable in x, weight, bias and gate_logits.
    """
    _check_inputs(x, weight, bias, gate_logits)
    out, _ = torch.ops.fastprompt.multispace_project.default(x, weight, bias, gate_logits)
    return out


def _per_row(gate_logits):
    return gate_logits is not None and gate_logits.dim() >= 2


@torch.library.register_fake("fastprompt::multispace_project")
def _multispace_project_fake(x, weight, bias, gate_logits):
    check_fake_dims(weight=(weight, 3, "(num_spaces, d_in, d_out)"))
    torch._check(x.dim() >= 1 and x.shape[-1] == weight.shape[1],
                 lambda: "x: expected the last dimension to equal weight.shape[1]")
    n, d_in, d_out = weight.shape
    out = x.new_empty((*x.shape[:-1], d_out))
    if _per_row(gate_logits):
        rows = 1
        for s in x.shape[:-1]:
            rows = rows * s
        return out, x.new_empty((n, rows, d_out))
    return out, x.new_empty((d_in, d_out))


@torch.library.register_fake("fastprompt::multispace_project_backward")
def _multispace_project_backward_fake(grad_out, x, weight, bias, gate_logits, saved):
    return (x.new_empty(x.shape), weight.new_empty(weight.shape),
            weight.new_empty(bias.shape if bias is not None else (0,)),
            weight.new_empty(gate_logits.shape if gate_logits is not None else (0,)))
