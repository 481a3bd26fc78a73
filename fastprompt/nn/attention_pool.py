import math

import torch
from torch import nn

from fastprompt.ops.attention_pool import attention_pool


class SelfAttentionPooling(nn.Module):
    """Pools a variable number of tokens into ``num_tokens`` with learned queries
    (see :func:`fastprompt.attention_pool`).

    Args:
        dim: D, the feature size of the tokens.
        num_tokens: K, the number of pooled tokens (one learned query each).

    Shape: input z (B, T, D) and optional mask (B, T) bool (true = real token);
    output (B, K, D). Parameter: queries (D, K), initialised N(0, 1 / D).
    """

    def __init__(self, dim: int, num_tokens: int, device=None, dtype=None):
        super().__init__()
        if not isinstance(dim, int) or dim < 1:
            raise ValueError(f"dim: expected a positive int, got {dim!r}")
        if not isinstance(num_tokens, int) or num_tokens < 1:
            raise ValueError(f"num_tokens: expected a positive int, got {num_tokens!r}")
        self.dim, self.num_tokens = dim, num_tokens
        self.queries = nn.Parameter(torch.empty(dim, num_tokens, device=device, dtype=dtype))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.queries, std=1.0 / math.sqrt(self.dim))

    def forward(self, z: torch.Tensor, mask: torch.Tensor = None) -> torch.Tensor:
        return attention_pool(z, self.queries, mask)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_tokens={self.num_tokens}"
