"""Helpers shared by the case modules."""
import functools

import torch


@functools.lru_cache(maxsize=None)
def compiled(fn):
    """torch.compile(fn), built once per reference function."""
    return torch.compile(fn, dynamic=False)


def providers(fast, ref, grad_argnums=None) -> dict:
    """The three providers of a case: fastprompt, the eager reference and torch.compile of it;
    with `grad_argnums`, each as forward + backward (fwd_bwd) over those arguments."""
    from fastprompt.bench.core import fwd_bwd

    fns = {"fastprompt": fast, "eager": ref, "compile": compiled(ref)}
    if grad_argnums is None:
        return fns
    return {name: fwd_bwd(fn, grad_argnums=grad_argnums) for name, fn in fns.items()}


def element_size(dtype: torch.dtype) -> int:
    return torch.empty((), dtype=dtype).element_size()


def leaves(requires_grad: bool, *tensors: torch.Tensor) -> tuple:
    """The tensors, marked as requiring grad when `requires_grad` (inputs of fwd+bwd cases)."""
    if requires_grad:
        for t in tensors:
            t.requires_grad_(True)
    return tensors
