"""Batched vector arithmetic on task prompt vectors.

``combine``: out[b] = base + sum_t weights[b, t] bank[t], differentiable in bank, weights and
base. ``merge``: the merge methods of ``peft.utils.merge_utils`` (task arithmetic, magnitude
prune, TIES, DARE, DARE-TIES) in one fused kernel pass each (after the per-vector top-k
threshold selection). ``merge`` is not differentiable.
"""
from typing import Optional

import torch

from fastprompt.ops._checks import FLOAT_DTYPES, check_fake_dims, check_tensor
from fastprompt.reference.task_arithmetic import DARE_METHODS, check_density, check_merge_method, check_sign

__all__ = ["combine", "merge"]


def _check_weights(weights, name="weights"):
    if not isinstance(weights, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(weights).__name__}")
    if weights.dtype not in FLOAT_DTYPES:
        raise RuntimeError(
            f"{name}: expected a floating tensor of dtype float32, float64, float16 or bfloat16, "
            f"got {weights.dtype}")


def _check_device(name, t, ref_name, ref):
    if t.device != ref.device:
        raise RuntimeError(f"{name}: expected a tensor on {ref.device} (the device of {ref_name}), "
                           f"got one on {t.device}")


def _combine_shapes(bank, weights, base):
    """Validates the arguments; returns (T, item shape bank.shape[1:], output shape)."""
    check_tensor("bank", bank)
    if bank.dim() < 1 or bank.shape[0] < 1:
        raise RuntimeError(f"bank: expected shape (T, ...) with at least 1 vector, got {tuple(bank.shape)}")
    _check_weights(weights)
    _check_device("weights", weights, "bank", bank)
    T = bank.shape[0]
    item = tuple(bank.shape[1:])
    if weights.dim() not in (1, 2) or weights.shape[-1] != T:
        raise RuntimeError(
            f"weights: expected shape (B, {T}) or ({T},) with the last dimension equal to the "
            f"number of vectors bank.shape[0] = {T}, got {tuple(weights.shape)}")
    out_shape = tuple(weights.shape[:-1]) + item
    if base is not None:
        check_tensor("base", base)
        _check_device("base", base, "bank", bank)
        if base.dtype != bank.dtype:
            raise RuntimeError(f"base: expected dtype {bank.dtype} (the dtype of bank), got {base.dtype}")
        # broadcastable to out_shape (torch.broadcast_shapes costs more than the op at small sizes)
        tail = out_shape[len(out_shape) - base.dim():] if base.dim() else ()
        if base.dim() > len(out_shape) or any(s != 1 and s != o for s, o in zip(base.shape, tail)):
            raise RuntimeError(
                f"base: expected a shape broadcastable to the output shape {out_shape} "
                f"(item shape {item} = bank.shape[1:], shared, or (B, ...) per row), got {tuple(base.shape)}")
    return T, item, out_shape


def combine(bank: torch.Tensor, weights: torch.Tensor, base: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Weighted sums of a bank of vectors, one per row of weights.

    Args:
        bank: (T, ...) T vectors (task prompt vectors), float32/float16/bfloat16/float64.
        weights: (B, T) one mix per output row, or (T,) a single mix; any floating dtype
            (converted to the accumulation type).
        base: optional tensor of bank's dtype broadcastable to the output: (...) shared by all
            rows, or (B, ...) one per row.

    Returns:
        (B, ...) for 2-D weights, (...) for 1-D weights, in bank's dtype:
        out[b] = base[b] + sum_t weights[b, t] * bank[t], accumulated in float32 (float64).
        Differentiable in bank, weights and base (deterministic kernels, no atomics).
    """
    T, item, out_shape = _combine_shapes(bank, weights, base)
    if base is not None and base.shape != item and base.shape != out_shape:
        # broadcast to what the op takes: the item shape (shared) or the output shape (one per row)
        if weights.dim() == 2 and base.dim() == len(out_shape):
            base = base.expand(out_shape) if base.shape[0] != 1 else base[0].expand(item)
        else:
            base = base.expand(item)
    return torch.ops.fastprompt.combine.default(bank, weights, base)


def merge(vectors: torch.Tensor, method: str, weights: Optional[torch.Tensor] = None,
          density: float = 1.0, sign: str = "total", seed: Optional[int] = None) -> torch.Tensor:
    """Merge T task vectors into one, as ``peft.utils.merge_utils``.

    Args:
        vectors: (T, ...) the task vectors, T >= 1.
        method: "task_arithmetic" (sum_t w_t v_t), "magnitude_prune" (keep the
            k = int(density * numel) entries of largest |value| of each vector, then the weighted
            sum), "ties" (magnitude prune, elect the sign per entry from the pruned unweighted
            vectors by ``sign``, then the mean of the weighted entries that agree with it),
            "dare" (keep each entry with probability density, rescale by 1/density, weighted
            sum), "dare_ties" (DARE pruning, then the TIES election and disjoint mean).
        weights: (T,) weight per vector; None means all ones (peft requires them).
        density: fraction kept, in (0, 1]; 1 disables pruning (no DARE rescaling either).
        sign: "total" (sign of the sum) or "frequency" (sign of the count of signs); TIES only.
        seed: DARE seed (int). The keep mask is a hash of (seed, vector, element), identical on
            CPU and CUDA (``fastprompt.reference.task_arithmetic.dare_keep_mask``). None draws a seed from
            torch's default generator, so ``torch.manual_seed`` makes it reproducible.

    Returns:
        (...) merged vector in vectors' dtype (float32 accumulation). Not differentiable.
    """
    check_tensor("vectors", vectors)
    if vectors.dim() < 1 or vectors.shape[0] < 1:
        raise RuntimeError(
            f"vectors: expected shape (T, ...) with at least 1 vector, got {tuple(vectors.shape)}")
    check_merge_method(method)
    check_sign(sign)
    density = check_density(density)
    T = vectors.shape[0]
    if weights is None:
        weights = torch.ones(T, dtype=torch.float32, device=vectors.device)
    else:
        if not isinstance(weights, torch.Tensor):
            weights = torch.as_tensor(weights, dtype=torch.float32, device=vectors.device)
        _check_weights(weights)
        _check_device("weights", weights, "vectors", vectors)
        if weights.dim() != 1 or weights.shape[0] != T:
            raise RuntimeError(
                f"weights: expected shape ({T},), one weight per vector (vectors.shape[0] = {T}), "
                f"got {tuple(weights.shape)}")
    if seed is None:
        seed = _draw_seed() if method in DARE_METHODS else 0
    elif isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed: expected an int or None, got {type(seed).__name__}")
    if torch.is_grad_enabled() and (vectors.requires_grad or weights.requires_grad):
        raise RuntimeError("merge: not differentiable (vectors and weights must not require grad); "
                           "use fastprompt.combine for a differentiable weighted sum")
    T = vectors.shape[0]
    out = torch.ops.fastprompt.merge.default(vectors.reshape(T, -1) if vectors.numel() else
                                             vectors.reshape(T, 0), weights, method, density, sign,
                                             _seed_to_int64(seed))
    return out.reshape(vectors.shape[1:])


def _draw_seed() -> int:
    return int(torch.randint(0, 2 ** 62, (1,)).item())


def _seed_to_int64(seed: int) -> int:
    s = seed % (1 << 64)
    return s - (1 << 64) if s >= (1 << 63) else s


# ---- fake kernels and autograd ---------------------------------------------------------------
@torch.library.register_fake("fastprompt::combine")
def _combine_fake(bank, weights, base):
    torch._check(bank.dim() >= 1, lambda: "bank: expected shape (T, ...)")
    torch._check(weights.dim() in (1, 2), lambda: "weights: expected shape (rows, vectors) or (vectors,)")
    torch._check(weights.shape[-1] == bank.shape[0],
                 lambda: "weights: expected the last dimension to equal bank.shape[0]")
    return bank.new_empty(tuple(weights.shape[:-1]) + tuple(bank.shape[1:]))


@torch.library.register_fake("fastprompt::combine_backward")
def _combine_backward_fake(grad_out, bank, weights, base_rows):
    return (bank.new_empty(bank.shape), weights.new_empty(weights.shape),
            bank.new_empty((base_rows, bank[0].numel())))


@torch.library.register_fake("fastprompt::merge")
def _merge_fake(vectors, weights, method, density, sign, seed):
    check_fake_dims(vectors=(vectors, 2, "(vectors, numel)"))
    return vectors.new_empty((vectors.shape[1],))
