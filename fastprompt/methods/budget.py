"""Parameter budgets: counting trainable parameters and matching DePT / EPT to a plain prompt."""
from typing import Optional, Tuple

from torch import nn

from fastprompt.methods.base import positive_int


def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a module or wrapped model."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def dept_parameter_count(num_tokens: int, rank: int, dim: int, max_len: int) -> int:
    """Trainable parameters of DePT: m*d + r*(max_len + d)."""
    return num_tokens * dim + rank * (max_len + dim)


def match_prompt_budget(num_virtual_tokens: int, dim: int, max_len: int, num_tokens: Optional[int] = None,
                        rank: Optional[int] = None) -> Tuple[int, int]:
    """(m, r) for DePT / EPT with at most the parameters of a plain prompt of L tokens.

    DePT's rule: ``m*d + r*(max_len + d) <= L*d``. Give ``num_tokens`` (m) to get the largest rank
    that fits, or ``rank`` to get the largest m; with neither, m = round(0.6 L) (DePT's main
    setting, e.g. L=100 -> m=60, r=30 for d=768, max_len=256). Raises ValueError when nothing fits.
    """
    for name, value in (("num_virtual_tokens", num_virtual_tokens), ("dim", dim), ("max_len", max_len)):
        positive_int(name, value)
    budget = num_virtual_tokens * dim
    if num_tokens is not None and rank is not None:
        raise ValueError("num_tokens, rank: give at most one of them; the other is chosen to fit the budget")
    if rank is not None:
        positive_int("rank", rank)
        m = (budget - rank * (max_len + dim)) // dim
        if m < 1:
            raise ValueError(f"rank: a rank of {rank} leaves no room for a short prompt within the budget of "
                             f"{num_virtual_tokens} soft tokens (d={dim}, max_len={max_len})")
        return int(m), rank
    if num_tokens is None:
        num_tokens = max(1, int(round(0.6 * num_virtual_tokens)))
    positive_int("num_tokens", num_tokens)
    r = (budget - num_tokens * dim) // (max_len + dim)
    if r < 1:
        raise ValueError(f"num_tokens: a short prompt of {num_tokens} tokens leaves no room for a rank >= 1 "
                         f"within the budget of {num_virtual_tokens} soft tokens (d={dim}, max_len={max_len})")
    return num_tokens, int(r)
