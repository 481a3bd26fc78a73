"""fastprompt: fast C++/CUDA kernels and modules for soft-prompt tuning.

Functional API (each op has CPU and CUDA kernels, autograd and torch.compile support)::

    fastprompt.rational(x, numerator, denominator, form="A")   # (..., C), (G, m+1), (G, n)
    fastprompt.attention_pool(z, queries, mask=None)           # (B, T, D), (D, K), (B, T) -> (B, K, D)
    fastprompt.combine(bank, weights, base=None)               # (T, ...), (B, T) or (T,) -> (B, ...) or (...)
    fastprompt.merge(vectors, method, weights=None, density=1.0, sign="total", seed=None)  # (T, ...) -> (...)
    fastprompt.multispace_project(x, weight, bias=None, gate_logits=None)  # (..., d_in), (N, d_in, d_out) -> (..., d_out)

Modules live in :mod:`fastprompt.nn`, pure-PyTorch references in :mod:`fastprompt.reference`.
"""
from fastprompt._library import built_with_cuda, library_path  # loads fastprompt._C
from fastprompt import ops
from fastprompt.ops import *  # noqa: F401,F403  (every op family's functions, see fastprompt.ops)
from fastprompt import nn, reference

__version__ = "0.1.0"

__all__ = ops.__all__ + ["nn", "reference", "built_with_cuda", "library_path", "__version__"]

from fastprompt import vectors  # noqa: E402  task prompt vectors: arithmetic, merging, init, PromptBank
