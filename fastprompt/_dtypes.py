"""The accumulation dtype rule shared by the functional ops, the references and the modules."""
import torch


def accumulation_dtype(*args) -> torch.dtype:
    """float64 where any argument is float64, else float32 (the kernels accumulate in it).

    Arguments are dtypes, tensors, or None (skipped). Promotion with float32 also lets a wider
    dtype win, so references that take several inputs use the same rule.
    """
    dtype = torch.float32
    for a in args:
        if a is None:
            continue
        dtype = torch.promote_types(dtype, a.dtype if isinstance(a, torch.Tensor) else a)
    return dtype
