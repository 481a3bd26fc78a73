"""References of :func:`fastprompt.multispace_project`."""
import torch

from fastprompt._dtypes import accumulation_dtype

__all__ = ["multispace_project_ref", "multispace_project_folded_ref"]


def _gates(gate_logits, num_spaces, rows_shape, compute, device):
    """Softmax gates: (N,) for a shared gate or None (uniform), (M, N) per row."""
    if gate_logits is None:
        return torch.full((num_spaces,), 1.0 / num_spaces, dtype=compute, device=device)
    g = torch.softmax(gate_logits.to(compute), dim=-1)
    if gate_logits.dim() == 1:
        return g
    return g.reshape(rows_shape.numel(), num_spaces)


def multispace_project_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor = None,
                           gate_logits: torch.Tensor = None) -> torch.Tensor:
    """Reference of :func:`fastprompt.multispace_project`: projects into every space.

    x (..., d_in), weight (N, d_in, d_out), bias (N, d_out) or None, gate_logits shared (N,),
    per row (..., N) or None (uniform 1/N) -> (..., d_out) in x's dtype:

        y = sum_k softmax(gate_logits)_k (x @ weight[k] + bias[k])

    Computes in the promoted dtype of the inputs (at least float32). Cost: 2 M N d_in d_out
    FLOPs for M rows (every space is projected, then the results are mixed).
    """
    compute = accumulation_dtype(x, weight, bias, gate_logits)
    n, d_in, d_out = weight.shape
    lead = x.shape[:-1]
    x2 = x.to(compute).reshape(lead.numel(), d_in)            # (M, d_in)
    ys = torch.matmul(x2, weight.to(compute))                 # (N, M, d_out)
    if bias is not None:
        ys = ys + bias.to(compute).unsqueeze(1)
    g = _gates(gate_logits, n, lead, compute, x.device)
    if g.dim() == 1:
        y = (g.view(n, 1, 1) * ys).sum(0)
    else:
        y = (g.t().unsqueeze(-1) * ys).sum(0)
    return y.reshape(*lead, d_out).to(x.dtype)


def multispace_project_folded_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor = None,
                                  gate_logits: torch.Tensor = None) -> torch.Tensor:
    """Eager baseline that folds a shared gate into the weights before the product.

    Same contract as :func:`multispace_project_ref`, for a shared (N,) gate or None only:
    W_eff = sum_k g_k weight[k] (d_in, d_out), b_eff = sum_k g_k bias[k], y = x @ W_eff + b_eff.
    Cost: 2 M d_in d_out FLOPs (N times fewer than projecting into every space).
    """
    if gate_logits is not None and gate_logits.dim() != 1:
        raise ValueError("gate_logits: the folded baseline takes a shared (N,) gate or None, got "
                         f"shape {tuple(gate_logits.shape)}")
    compute = accumulation_dtype(x, weight, bias, gate_logits)
    n, d_in, d_out = weight.shape
    g = _gates(gate_logits, n, x.shape[:-1], compute, x.device)
    w_eff = torch.tensordot(g, weight.to(compute), dims=1)   # (d_in, d_out)
    x2 = x.to(compute).reshape(x.shape[:-1].numel(), d_in)
    if bias is not None:
        y = torch.addmm(g @ bias.to(compute), x2, w_eff)
    else:
        y = x2 @ w_eff
    return y.reshape(*x.shape[:-1], d_out).to(x.dtype)
