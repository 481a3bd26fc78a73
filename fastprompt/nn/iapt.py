import torch
from torch import nn

from fastprompt.nn.attention_pool import SelfAttentionPooling
from fastprompt.nn.rational import RationalActivation


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
