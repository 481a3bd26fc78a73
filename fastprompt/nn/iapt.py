from typing import Sequence

import torch
from torch import nn

from fastprompt.nn.attention_pool import SelfAttentionPooling
from fastprompt.nn.rational import RationalActivation
from fastprompt.ops.attention_pool import attention_pool
from fastprompt.ops.gathered_linear import gathered_linear
from fastprompt.ops.rational import rational


class IAPTPromptGenerator(nn.Module):
    """The soft-prompt generator of one layer in IAPT (instruction-aware prompt tuning).

    tokens = up(rational(pool(down(h), mask))): a down-projection d_model -> bottleneck, self-attention
    pooling of the instruction tokens to ``num_tokens``, one learnable rational activation
    (shared by all channels), and an up-projection bottleneck -> d_model.

    Args:
        d_model: hidden size of the backbone layer.
        bottleneck: r, the width of the generator.
        num_tokens: K, soft tokens produced per call (IAPT uses 4).
        rational_degrees, rational_form, rational_init: see :class:`fastprompt.nn.RationalActivation`.
        bias: whether the projections have biases.

    Shape: hidden (B, T, d_model) and optional mask (B, T) bool marking the instruction tokens;
    output (B, K, d_model) in the dtype of the generator's parameters' computation (hidden's dtype).
    """

    def __init__(self, d_model: int, bottleneck: int, num_tokens: int = 4, rational_degrees=(5, 4),
                 rational_form: str = "A", rational_init: str = "gelu", bias: bool = True,
                 device=None, dtype=None):
        super().__init__()
        for name, value in (("d_model", d_model), ("bottleneck", bottleneck), ("num_tokens", num_tokens)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        factory = {"device": device, "dtype": dtype}
        self.d_model, self.bottleneck, self.num_tokens = d_model, bottleneck, num_tokens
        self.down = nn.Linear(d_model, bottleneck, bias=bias, **factory)
        self.pool = SelfAttentionPooling(bottleneck, num_tokens, **factory)
        self.activation = RationalActivation(1, tuple(rational_degrees), rational_form, rational_init, **factory)
        self.up = nn.Linear(bottleneck, d_model, bias=bias, **factory)

    def forward(self, hidden: torch.Tensor, mask: torch.Tensor = None,
                input_scale: torch.Tensor = None) -> torch.Tensor:
        """hidden (B, T, d_model), mask (B, T) bool, input_scale (B, T, 1) or None: the generator
        reads ``hidden * input_scale`` (applied after the down-projection's matrix product, so the
        scaled (B, T, d_model) tensor is never formed). Returns (B, K, d_model)."""
        if hidden.dim() != 3 or hidden.shape[-1] != self.d_model:
            raise ValueError(f"hidden: expected shape (batch, tokens, {self.d_model}), got {tuple(hidden.shape)}")
        if input_scale is None:
            z = self.down(hidden)
        else:
            if input_scale.shape != hidden.shape[:-1] + (1,):
                raise ValueError(f"input_scale: expected shape {tuple(hidden.shape[:-1]) + (1,)}, "
                                 f"got {tuple(input_scale.shape)}")
            z = nn.functional.linear(hidden, self.down.weight) * input_scale
            if self.down.bias is not None:
                z = z + self.down.bias
        return self.up(self.activation(self.pool(z, mask)))

    def extra_repr(self) -> str:
        return f"d_model={self.d_model}, bottleneck={self.bottleneck}, num_tokens={self.num_tokens}"


def generator_shape(generator: IAPTPromptGenerator) -> tuple:
    """What generators must share to run in one batched call (:func:`generate_per_row`)."""
    return (generator.d_model, generator.bottleneck, generator.num_tokens, generator.activation.degrees,
            generator.activation.form, generator.down.bias is not None, generator.up.bias is not None,
            generator.down.weight.dtype)


def generate_per_row(generators: Sequence[IAPTPromptGenerator], index: torch.Tensor, hidden: torch.Tensor,
                     mask: torch.Tensor = None, input_scale: torch.Tensor = None) -> torch.Tensor:
    """The soft tokens of every row from its own generator, in one batched computation.

    Row b is computed by ``generators[index[b]]``, with the same result as calling that generator
    on the row alone; the number of kernels does not depend on how many generators there are
    (the projections are :func:`fastprompt.gathered_linear` calls, the pooling takes per-row
    queries, and the rational runs with one coefficient group per row). Differentiable with
    respect to every generator's parameters.

    Args:
        generators: A generators of one :func:`generator_shape`.
        index: (B,) int64, values in [0, A).
        hidden, mask, input_scale: as :meth:`IAPTPromptGenerator.forward`.

    Returns: (B, K, d_model).
    """
    first = generators[0]
    if any(generator_shape(g) != generator_shape(first) for g in generators[1:]):
        raise ValueError("generators: expected generators of one shape (d_model, bottleneck, num_tokens, "
                         "rational degrees and form, biases, dtype) to run them in one batched call")
    if hidden.dim() != 3 or hidden.shape[-1] != first.d_model:
        raise ValueError(f"hidden: expected shape (batch, tokens, {first.d_model}), got {tuple(hidden.shape)}")

    def stacked(get):
        return torch.stack([get(g) for g in generators])

    down_bias = stacked(lambda g: g.down.bias) if first.down.bias is not None else None
    if input_scale is None:
        z = gathered_linear(hidden, stacked(lambda g: g.down.weight), down_bias, index)
    else:
        z = gathered_linear(hidden, stacked(lambda g: g.down.weight), None, index) * input_scale
        if down_bias is not None:
            z = z + down_bias.index_select(0, index).unsqueeze(1)
    pooled = attention_pool(z, stacked(lambda g: g.pool.queries).index_select(0, index), mask)  # (B, K, r)
    batch, k, r = pooled.shape
    # one coefficient group per row: channel b * r + j of the (K, B * r) view belongs to row b
    numerator = stacked(lambda g: g.activation.numerator).index_select(0, index).flatten(1)
    denominator = stacked(lambda g: g.activation.denominator).index_select(0, index).flatten(1)
    activated = rational(pooled.transpose(0, 1).reshape(k, batch * r), numerator, denominator,
                         first.activation.form).reshape(k, batch, r).transpose(0, 1)
    up_bias = stacked(lambda g: g.up.bias) if first.up.bias is not None else None
    return gathered_linear(activated, stacked(lambda g: g.up.weight), up_bias, index)
