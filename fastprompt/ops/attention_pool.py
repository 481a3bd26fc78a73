"""Self-attention pooling.

scores u = z @ queries (B, T, K); a = softmax over T of u with masked tokens excluded;
out[b, k, :] = sum_t a[b, t, k] z[b, t, :]. A row with no real token gives zeros (and zero
gradients). The kernels fuse scores, an online softmax and the weighted sum in one pass over z
and save only the log-sum-exp (B, K) for the backward, which recomputes the weights.

Per-row queries (B, D, K), one set per row (several adapters' pooling in one batch), run as
batched matrix products in the accumulation dtype: the same arithmetic in a constant number of
kernels, whatever the number of different query sets.
"""
import torch

from fastprompt._dtypes import accumulation_dtype
from fastprompt.ops._checks import check_fake_dims, check_tensor
from fastprompt.reference.attention_pool import attention_pool_ref

__all__ = ["attention_pool"]


def attention_pool(z: torch.Tensor, queries: torch.Tensor, mask: torch.Tensor = None) -> torch.Tensor:
    """Pool T tokens into K by learned-query attention.

    Args:
        z: (B, T, D) tokens, float32/float16/bfloat16/float64, any strides.
        queries: (D, K) learned queries, one column per output token; float32 or z's dtype
            (float64 for float64 z). Or (B, D, K): row b pooled with queries[b].
        mask: optional (B, T) bool, true = real token. Masked tokens get no weight.

    Returns:
        (B, K, D) tensor of z's dtype; float32 (float64 for float64) accumulation.
    """
    check_tensor("z", z, dim=3, shape_doc="(batch, tokens, dim)")
    per_row = isinstance(queries, torch.Tensor) and queries.dim() == 3
    if per_row:
        check_tensor("queries", queries, dim=3, shape_doc="(batch, dim, num_queries)")
        if queries.shape[:2] != (z.shape[0], z.shape[2]):
            raise RuntimeError(
                f"queries: expected shape ({z.shape[0]}, {z.shape[2]}, num_queries) = (z.shape[0], z.shape[2], "
                f"num_queries) for per-row queries, got {tuple(queries.shape)}")
    else:
        check_tensor("queries", queries, dim=2, shape_doc="(dim, num_queries)")
        if queries.shape[0] != z.shape[2]:
            raise RuntimeError(
                f"queries: expected shape ({z.shape[2]}, num_queries) with the first dimension equal to "
                f"z.shape[2], got {tuple(queries.shape)}")
    if mask is not None:
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"mask: expected a torch.Tensor or None, got {type(mask).__name__}")
        if mask.dtype != torch.bool:
            raise RuntimeError(f"mask: expected a bool tensor, got {mask.dtype}")
        if mask.dim() != 2 or mask.shape[0] != z.shape[0] or mask.shape[1] != z.shape[1]:
            raise RuntimeError(
                f"mask: expected shape ({z.shape[0]}, {z.shape[1]}) = (z.shape[0], z.shape[1]), "
                f"got {tuple(mask.shape)}")
    if z.dtype == torch.float64 and queries.dtype != torch.float64:
        raise RuntimeError(f"queries: expected float64 queries for float64 z, got {queries.dtype}")
    if per_row:
        return attention_pool_ref(z, queries, mask)
    out, _ = torch.ops.fastprompt.attention_pool.default(z, queries, mask)
    return out


@torch.library.register_fake("fastprompt::attention_pool")
def _attention_pool_fake(z, queries, mask):
    check_fake_dims(z=(z, 3, "(batch, tokens, dim)"), queries=(queries, 2, "(dim, num_queries)"))
    torch._check(queries.shape[0] == z.shape[2],
                 lambda: "queries: expected the first dimension to equal z.shape[2]")
    batch, dim, k = z.shape[0], z.shape[2], queries.shape[1]
    return z.new_empty((batch, k, dim)), z.new_empty((batch, k), dtype=accumulation_dtype(z.dtype))


@torch.library.register_fake("fastprompt::attention_pool_backward")
def _attention_pool_backward_fake(grad_out, z, queries, mask, out, lse):
    return z.new_empty(z.shape), queries.new_empty(queries.shape)
