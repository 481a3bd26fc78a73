import torch

from fastprompt._dtypes import accumulation_dtype

__all__ = ["gathered_linear_ref"]


def gathered_linear_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor = None,
                        index: torch.Tensor = None) -> torch.Tensor:
    """Reference of :func:`fastprompt.gathered_linear`: gather each row's layer, then a batched
    product (the gather + bmm form).

    x (B, T, K), weight (A, N, K), bias (A, N) or None, index (B,) int64 -> (B, T, N). Computes
    in the promoted dtype of x and weight (at least float32) and returns x's dtype.
    """
    compute = accumulation_dtype(x, weight)
    out = torch.bmm(x.to(compute), weight.to(compute)[index].transpose(1, 2))
    if bias is not None:
        out = out + bias.to(compute)[index].unsqueeze(1)
    return out.to(x.dtype)
