import torch
import torch.nn.functional as F

from fastprompt.reference.attention_pool import attention_pool_ref
from fastprompt.reference.rational import rational_ref


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
