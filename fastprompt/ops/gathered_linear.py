"""Gathered linear layer: one linear layer per batch row, chosen by an index from stacked layers.

out[b, t, :] = weight[index[b]] @ x[b, t, :] + bias[index[b]]. This is the multi-tenant form of
``torch.nn.functional.linear``: a batch whose rows belong to different adapters runs every row
through its own layer in one call, whatever the number of different layers (one kernel on CUDA,
no gathered copy of the weights). The weight gradient of each layer sums its rows in batch order,
so results do not depend on the thread count.
"""
import torch

from fastprompt.ops._checks import check_fake_dims, check_tensor

__all__ = ["gathered_linear"]


def gathered_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor = None,
                    index: torch.Tensor = None) -> torch.Tensor:
    """Apply layer ``index[b]`` of a stack of linear layers to batch row b.

    Args:
        x: (B, T, K) inputs, float32/float64/float16/bfloat16, any strides.
        weight: (A, N, K) the A layers' weights (``nn.Linear`` layout), x's dtype.
        bias: optional (A, N) biases, x's dtype.
        index: (B,) int64, the layer of each row, in [0, A). CPU indices are checked (an error);
            on CUDA they are not copied to the host for that, and a row with an index out of range
            comes out as NaN (and adds nothing to the weight gradient).

    Returns:
        (B, T, N) tensor of x's dtype; float32 (float64 for float64) accumulation.
    """
    check_tensor("x", x, dim=3, shape_doc="(batch, tokens, in_features)")
    check_tensor("weight", weight, dim=3, shape_doc="(layers, out_features, in_features)")
    if bias is not None:
        check_tensor("bias", bias, dim=2, shape_doc="(layers, out_features)")
    if not isinstance(index, torch.Tensor):
        raise TypeError(f"index: expected an int64 torch.Tensor of shape (batch,), got {type(index).__name__}")
    return torch.ops.fastprompt.gathered_linear.default(x, weight, bias, index)


@torch.library.register_fake("fastprompt::gathered_linear")
def _gathered_linear_fake(x, weight, bias, index):
    check_fake_dims(x=(x, 3, "(batch, tokens, in_features)"),
                    weight=(weight, 3, "(layers, out_features, in_features)"), index=(index, 1, "(batch,)"))
    torch._check(weight.shape[2] == x.shape[2], lambda: "weight: expected in_features = x.shape[2]")
    torch._check(index.shape[0] == x.shape[0], lambda: "index: expected one layer index per batch row")
    return x.new_empty((x.shape[0], x.shape[1], weight.shape[1]))


@torch.library.register_fake("fastprompt::gathered_linear_backward")
def _gathered_linear_backward_fake(grad_out, x, weight, index, bias):
    grad_bias = x.new_empty((weight.shape[0], weight.shape[1]) if bias else (0, 0))
    return x.new_empty(x.shape), x.new_empty(weight.shape), grad_bias
