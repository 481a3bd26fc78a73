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


# the parameters of a generator, as (submodule, attribute); a bias may be None
GENERATOR_PARAMETERS = (("down", "weight"), ("down", "bias"), ("pool", "queries"), ("activation", "numerator"),
                        ("activation", "denominator"), ("up", "weight"), ("up", "bias"))


def _check_one_shape(generators: Sequence[IAPTPromptGenerator]) -> None:
    if not generators:
        raise ValueError("generators: expected at least one generator")
    first = generator_shape(generators[0])
    if any(generator_shape(g) != first for g in generators[1:]):
        raise ValueError("generators: expected generators of one shape (d_model, bottleneck, num_tokens, "
                         "rational degrees and form, biases, dtype) to run them in one batched call")


def _parameter(generator: IAPTPromptGenerator, field) -> torch.Tensor:
    return getattr(getattr(generator, field[0]), field[1])


class StackedGenerators:
    """Generators of one :func:`generator_shape` whose parameters live in stacked tensors.

    Building it moves every parameter of ``generators[a]`` into row ``a`` of one (A, ...) tensor
    per parameter kind (the parameter becomes a view of that row: no copy is kept, and optimizer
    steps, ``load_state_dict`` and other in-place updates are seen through both). Without autograd,
    :func:`generate_per_row` then reads the stacked tensors directly instead of stacking the
    generators' parameters on every call. A parameter shared by several generators lists (the
    shared projections of :class:`fastprompt.methods.IAPTModel`) is stacked once: pass the same
    ``storage`` dict to the stacks that share it.

    Moving or re-assigning a parameter afterwards (``.to()``, ``param.data = ...``) detaches it
    from the stack; :meth:`is_current` tells (it checks each generator's down-projection).
    """

    def __init__(self, generators: Sequence[IAPTPromptGenerator], storage: dict = None):
        self.generators = list(generators)
        _check_one_shape(self.generators)
        storage = {} if storage is None else storage
        self.tensors = {}
        for field in GENERATOR_PARAMETERS:
            params = [_parameter(g, field) for g in self.generators]
            if params[0] is None:
                self.tensors[field] = None
                continue
            key = tuple(id(p) for p in params)
            if len(set(key)) != len(key):
                raise ValueError("generators: a parameter appears in two of the generators; stack distinct ones")
            if key not in storage:
                with torch.no_grad():
                    stacked = torch.stack([p.detach() for p in params])
                for row, p in enumerate(params):
                    p.data = stacked[row]
                storage[key] = stacked
            self.tensors[field] = storage[key]
        self._anchors = [(g.down, g.down.weight, g.down.weight.data_ptr()) for g in self.generators]

    def __len__(self) -> int:
        return len(self.generators)

    def is_current(self) -> bool:
        """Whether the generators' parameters are still the rows of the stacked tensors."""
        return all(module.weight is weight and weight.data_ptr() == ptr for module, weight, ptr in self._anchors)

    def stacked(self, field) -> torch.Tensor:
        """(A, ...) the parameter ``field`` of every generator: the stored stack without autograd,
        a differentiable ``torch.stack`` of the parameters with it."""
        tensor = self.tensors[field]
        if tensor is not None and torch.is_grad_enabled() \
                and any(_parameter(g, field).requires_grad for g in self.generators):
            return torch.stack([_parameter(g, field) for g in self.generators])
        return tensor


class _ListOfGenerators:
    """The parameters of a list of generators, stacked on each call (no storage is moved)."""

    def __init__(self, generators: Sequence[IAPTPromptGenerator]):
        self.generators = list(generators)
        _check_one_shape(self.generators)

    def stacked(self, field) -> torch.Tensor:
        params = [_parameter(g, field) for g in self.generators]
        return None if params[0] is None else torch.stack(params)


def generate_per_row(generators, index: torch.Tensor, hidden: torch.Tensor,
                     mask: torch.Tensor = None, input_scale: torch.Tensor = None) -> torch.Tensor:
    """The soft tokens of every row from its own generator, in one batched computation.

    Row b is computed by ``generators[index[b]]``, with the same result as calling that generator
    on the row alone; the number of kernels does not depend on how many generators there are
    (the projections are :func:`fastprompt.gathered_linear` calls, the pooling takes per-row
    queries, and the rational runs with one coefficient group per row). Differentiable with
    respect to every generator's parameters.

    Args:
        generators: A generators of one :func:`generator_shape`: a sequence (their parameters are
            stacked on each call), or a :class:`StackedGenerators` (stacked once, for serving).
        index: (B,) int64, values in [0, A).
        hidden, mask, input_scale: as :meth:`IAPTPromptGenerator.forward`.

    Returns: (B, K, d_model).
    """
    stack = generators if isinstance(generators, StackedGenerators) else _ListOfGenerators(generators)
    first = stack.generators[0]
    if hidden.dim() != 3 or hidden.shape[-1] != first.d_model:
        raise ValueError(f"hidden: expected shape (batch, tokens, {first.d_model}), got {tuple(hidden.shape)}")
    down_weight, down_bias, queries, numerator, denominator, up_weight, up_bias = (
        stack.stacked(field) for field in GENERATOR_PARAMETERS)
    if input_scale is None:
        z = gathered_linear(hidden, down_weight, down_bias, index)
    else:
        z = gathered_linear(hidden, down_weight, None, index) * input_scale
        if down_bias is not None:
            z = z + down_bias.index_select(0, index).unsqueeze(1)
    pooled = attention_pool(z, queries.index_select(0, index), mask)  # (B, K, r)
    batch, k, r = pooled.shape
    # one coefficient group per row: channel b * r + j of the (K, B * r) view belongs to row b
    activated = rational(pooled.transpose(0, 1).reshape(k, batch * r), numerator.index_select(0, index).flatten(1),
                         denominator.index_select(0, index).flatten(1),
                         first.activation.form).reshape(k, batch, r).transpose(0, 1)
    return gathered_linear(activated, up_weight, up_bias, index)
