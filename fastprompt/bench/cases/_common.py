"""Helpers shared by the case modules."""
import functools

import torch


@functools.lru_cache(maxsize=None)
def compiled(fn):
    """torch.compile(fn), built once per reference function."""
    return torch.compile(fn, dynamic=False)


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()
