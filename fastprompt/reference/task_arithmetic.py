"""Pure-PyTorch reference of the batched vector arithmetic ops: ``combine`` and the
``merge`` methods of task vectors. The merge definitions follow ``peft.utils.merge_utils``.

Conventions shared with the kernels (csrc/task_arithmetic/):

* accumulation in float32 (float64 for float64 inputs);
* magnitude pruning keeps the k = int(density * numel) entries of largest |value| per vector;
  among entries whose |value| ties with the k-th largest, the lowest indices are kept
  (torch.topk, which peft uses, leaves that order unspecified);
* density >= 1 means no pruning at all (as peft: DARE then does not rescale either);
* the DARE keep mask is a counter-based hash of (seed, vector index, element index), see
  :func:`dare_keep_mask`; the CPU and CUDA kernels compute the same hash
  (csrc/task_arithmetic/task_arithmetic_rng.h).

The merge method and sign names, and their validation, live here once: the functional op, the
task-vector package and the benchmarks import them.
"""
import math
from typing import Optional

import torch

from fastprompt._dtypes import accumulation_dtype

__all__ = ["combine_ref", "dare_keep_mask", "merge_ref"]

MERGE_METHODS = ("task_arithmetic", "magnitude_prune", "ties", "dare", "dare_ties")
SIGN_METHODS = ("total", "frequency")
DARE_METHODS = ("dare", "dare_ties")        # the methods that draw a random keep mask
MAGNITUDE_METHODS = ("magnitude_prune", "ties")  # the methods that keep the largest |value|

_M32 = 0xFFFFFFFF


def check_merge_method(method) -> str:
    if method not in MERGE_METHODS:
        raise ValueError(f"method: unknown merge method {method!r}; expected one of "
                         f"{', '.join(map(repr, MERGE_METHODS))}")
    return method


def check_sign(sign) -> str:
    if sign not in SIGN_METHODS:
        raise ValueError(f"sign: expected one of {', '.join(map(repr, SIGN_METHODS))}, got {sign!r}")
    return sign


def check_density(density) -> float:
    """density as a float in (0, 1]; anything else is a ValueError naming the argument."""
    if isinstance(density, bool):
        raise ValueError(f"density: expected a number in (0, 1], got {density!r}")
    try:
        d = float(density)
    except (TypeError, ValueError):
        raise ValueError(f"density: expected a number in (0, 1], got {density!r}") from None
    if math.isnan(d) or not (0.0 < d <= 1.0):
        raise ValueError(f"density: expected a value in (0, 1], got {density!r}")
    return d


def combine_ref(bank: torch.Tensor, weights: torch.Tensor, base: Optional[torch.Tensor] = None) -> torch.Tensor:
    """out = base + sum_t weights[..., t] * bank[t].

    bank (T, ...); weights (B, T) -> out (B, ...), or weights (T,) -> out (...); base None or
    broadcastable to the output shape. Output dtype = bank dtype.
    """
    c = accumulation_dtype(bank.dtype)
    T = bank.shape[0]
    item = bank.shape[1:]
    flat = bank.reshape(T, -1).to(c)
    out = weights.to(c) @ flat
    out = out.reshape(weights.shape[:-1] + item)
    if base is not None:
        out = out + base.to(c)
    return out.to(bank.dtype)


# ---- DARE keep mask: a counter-based hash (murmur3 fmix32 rounds on 32-bit words) -------------
def _mul32(a: torch.Tensor, c: int) -> torch.Tensor:
    """(a * c) mod 2^32 for int64 tensors holding values in [0, 2^32), without int64 overflow."""
    lo = a * (c & 0xFFFF)
    hi = ((a * (c >> 16)) & 0xFFFF) << 16
    return (lo + hi) & _M32


def _fmix32(h):
    if isinstance(h, int):
        h ^= h >> 16
        h = (h * 0x85EBCA6B) & _M32
        h ^= h >> 13
        h = (h * 0xC2B2AE35) & _M32
        h ^= h >> 16
        return h
    h = h ^ (h >> 16)
    h = _mul32(h, 0x85EBCA6B)
    h = h ^ (h >> 13)
    h = _mul32(h, 0xC2B2AE35)
    h = h ^ (h >> 16)
    return h


def _as_i32(c: int) -> int:
    return c - (1 << 32) if c >= (1 << 31) else c


def _fmix32_i32(h: torch.Tensor) -> torch.Tensor:
    """fmix32 on int32 tensors holding uint32 bit patterns (logical shifts by masking)."""
    h = h ^ ((h >> 16) & 0xFFFF)
    h = h * _as_i32(0x85EBCA6B)
    h = h ^ ((h >> 13) & 0x7FFFF)
    h = h * _as_i32(0xC2B2AE35)
    return h ^ ((h >> 16) & 0xFFFF)


def dare_vector_key(seed: int, vector: int) -> int:
    """The 32-bit key of vector ``vector`` under ``seed`` (any int; taken modulo 2^64)."""
    s = seed % (1 << 64)
    s0, s1 = s & _M32, s >> 32
    k = _fmix32((s0 + 0x9E3779B9) & _M32)
    k = _fmix32(k ^ s1)
    k = _fmix32(k ^ ((vector * 0x632BE5AB) & _M32))
    return k


def dare_keep_threshold(density: float) -> int:
    """Element kept iff its 24-bit uniform draw r satisfies r < ceil(density * 2^24)."""
    import math
    return min(1 << 24, max(0, math.ceil(density * 16777216.0)))


def dare_keep_mask(seed: int, num_vectors: int, numel: int, density: float,
                   device=None) -> torch.Tensor:
    """The DARE keep mask (num_vectors, numel) bool used by ``merge(..., seed=seed)``.

    r(t, i) = fmix32(fmix32(lo32(i) ^ key_t) ^ (hi32(i) + 0x27D4EB2F)) >> 8 (24 bits), with
    key_t = :func:`dare_vector_key`; kept iff r < ceil(density * 2^24), so the keep probability
    is density to within 2^-24.
    """
    thr = dare_keep_threshold(density)
    rows = []
    if numel < (1 << 31):  # int32 lanes holding the uint32 bit patterns (wrapping multiplies)
        lo = torch.arange(numel, dtype=torch.int32, device=device)
        hc = _as_i32(0x27D4EB2F)
        for t in range(num_vectors):
            h = _fmix32_i32(lo ^ _as_i32(dare_vector_key(seed, t)))
            h = _fmix32_i32(h ^ hc)
            rows.append(((h >> 8) & 0xFFFFFF) < thr)
    else:
        i = torch.arange(numel, dtype=torch.int64, device=device)
        lo = i & _M32
        hi = ((i >> 32) + 0x27D4EB2F) & _M32
        for t in range(num_vectors):
            h = _fmix32(lo ^ dare_vector_key(seed, t))
            h = _fmix32(h ^ hi)
            rows.append((h >> 8) < thr)
    if not rows:
        return torch.zeros(0, numel, dtype=torch.bool, device=device)
    return torch.stack(rows)


def magnitude_keep_mask(vectors: torch.Tensor, density: float) -> torch.Tensor:
    """(T, N) bool: the top k = int(density * N) entries of |vectors[t]| per row; ties at the
    threshold keep the lowest indices."""
    T, N = vectors.shape
    k = int(density * N)
    if k >= N:
        return torch.ones(T, N, dtype=torch.bool, device=vectors.device)
    if k <= 0:
        return torch.zeros(T, N, dtype=torch.bool, device=vectors.device)
    a = vectors.abs()
    thr = torch.kthvalue(a, N - k + 1, dim=1, keepdim=True).values  # k-th largest
    greater = a > thr
    equal = a == thr
    need = k - greater.sum(dim=1, keepdim=True)
    return greater | (equal & (torch.cumsum(equal.to(torch.int64), dim=1) <= need))


def merge_ref(vectors: torch.Tensor, method: str, weights: Optional[torch.Tensor] = None,
              density: float = 1.0, sign: str = "total", seed: Optional[int] = None,
              dare_mask: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Merge T task vectors (T, ...) into one (...), as peft.utils.merge_utils.

    ``dare_mask`` (T, numel) bool overrides the mask drawn from ``seed`` (tests).
    """
    T = vectors.shape[0]
    item = vectors.shape[1:]
    c = accumulation_dtype(vectors.dtype)
    x = vectors.reshape(T, -1).to(c)
    N = x.shape[1]
    w = torch.ones(T, dtype=c, device=x.device) if weights is None else weights.to(x.device, c).reshape(T)
    if method in MAGNITUDE_METHODS and density < 1:
        x = x * magnitude_keep_mask(x, density)
    elif method in DARE_METHODS and density < 1:
        if dare_mask is None:
            if seed is None:
                seed = int(torch.randint(0, 2 ** 62, (1,)).item())
            dare_mask = dare_keep_mask(seed, T, N, density, device=x.device)
        x = x * dare_mask.reshape(T, N) / density
    if method in ("task_arithmetic", "magnitude_prune", "dare"):
        out = (x * w[:, None]).sum(dim=0)
    else:
        s = x.sign()
        mag = x.sum(dim=0) if sign == "total" else s.sum(dim=0)
        majority = torch.where(mag >= 0, 1.0, -1.0).to(c)
        agree = s == majority
        out = (x * w[:, None] * agree).sum(dim=0) / agree.sum(dim=0).clamp(min=1).to(c)
    return out.reshape(item).to(vectors.dtype)
