import torch
import torch.nn.functional as F

from fastprompt.reference.attention_pool import attention_pool_ref
from fastprompt.reference.rational import rational_ref

__all__ = ["iapt_generator_ref", "iapt_generator_ref_from_module", "iapt_soft_tokens_ref"]


def iapt_generator_ref(hidden, mask, down_weight, down_bias, queries, numerator, denominator,
                       up_weight, up_bias, form: str = "A") -> torch.Tensor:
    """Reference of :class:`fastprompt.nn.IAPTPromptGenerator` from its parameters.

    hidden (B, T, d_model), mask (B, T) bool or None, down_weight (r, d_model), queries (r, K),
    numerator (1, m + 1), denominator (1, n), up_weight (d_model, r) -> (B, K, d_model).
    """
    z = F.linear(hidden, down_weight, down_bias)
    pooled = attention_pool_ref(z, queries, mask)
    return F.linear(rational_ref(pooled, numerator, denominator, form), up_weight, up_bias)


def iapt_generator_ref_from_module(generator, hidden, mask=None) -> torch.Tensor:
    """:func:`iapt_generator_ref` with the parameters of an IAPTPromptGenerator."""
    return iapt_generator_ref(hidden, mask, generator.down.weight, generator.down.bias,
                              generator.pool.queries, generator.activation.numerator,
                              generator.activation.denominator, generator.up.weight,
                              generator.up.bias, generator.activation.form)


def iapt_soft_tokens_ref(generator, hidden, mask, normalize_input: bool = True, token_scale: str = "hidden_rms",
                         eps: float = 1e-6) -> torch.Tensor:
    """Reference of the soft tokens IAPTModel places at one layer (hidden (B, T, d), mask (B, T) bool):
    the generator applied to the per-token RMS-normalised hidden states (``normalize_input``), its
    output rescaled per token to the median RMS of the masked hidden states of the row
    (``token_scale="hidden_rms"``; 1 for a row without masked tokens)."""
    h = hidden * torch.rsqrt(hidden.pow(2).mean(-1, keepdim=True) + eps) if normalize_input else hidden
    tokens = iapt_generator_ref_from_module(generator, h, mask)
    if token_scale == "hidden_rms":
        rms = hidden.detach().pow(2).mean(-1).sqrt()
        target = torch.stack([r[m].median() if m.any() else r.new_tensor(1.0) for r, m in zip(rms, mask)])
        tokens = tokens * torch.rsqrt(tokens.pow(2).mean(-1, keepdim=True) + 1e-12) * target[:, None, None]
    return tokens
