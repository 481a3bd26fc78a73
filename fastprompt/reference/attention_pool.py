import torch

from fastprompt._dtypes import accumulation_dtype

__all__ = ["attention_pool_ref"]


def attention_pool_ref(z: torch.Tensor, queries: torch.Tensor, mask: torch.Tensor = None) -> torch.Tensor:
    """Reference of :func:`fastprompt.attention_pool` (scores, masked softmax over T, weighted sum).

    z (B, T, D), queries (D, K) or per row (B, D, K), mask (B, T) bool with true = real token
    -> (B, K, D).
    Computes in the promoted dtype of z and queries (at least float32) and returns z's dtype.
    A row with no real token gives zeros.
    """
    compute = accumulation_dtype(z, queries)
    zc = z.to(compute)
    if z.shape[1] == 0:  # no tokens at all
        out = zc.new_zeros(z.shape[0], queries.shape[-1], z.shape[2]) + 0 * (zc.sum() + queries.sum())
        return out.to(z.dtype)
    scores = zc @ queries.to(compute)  # (B, T, K)
    if mask is not None:
        scores = scores.masked_fill(~mask.unsqueeze(-1), float("-inf"))
    top = scores.amax(dim=1, keepdim=True)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))
    weights = torch.exp(scores - top)
    total = weights.sum(dim=1, keepdim=True)
    weights = weights / torch.where(total > 0, total, torch.ones_like(total))
    return (weights.transpose(1, 2) @ zc).to(z.dtype)
