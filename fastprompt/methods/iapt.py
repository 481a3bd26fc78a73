"""IAPT, instruction-aware prompt tuning (arXiv 2405.18203), on Hugging Face transformers models.

Every transformer layer l of a frozen backbone gets its own :class:`IAPTPromptGenerator`. At the
input of layer l the generator reads that layer's input hidden states of the instruction tokens
and produces ``num_tokens`` soft tokens (4 by default). Only the generators (and, with the default
``gate="attention"``, one gate per layer and attention head) train.

Where the soft tokens go. :class:`IAPTModel` inserts ``num_tokens`` reserved positions per row
(``placement``): by default right after the first real token (``"after_first"``), so the first
position keeps the attention sink that trained decoders rely on, and ``[CLS]`` stays at position 0
for BERT's pooler. Before every layer the hidden states of the reserved positions are replaced by
that layer's soft tokens, so the layer computes their keys and values with its own weights.

How they act (``gate``):

* ``"attention"`` (default): the reserved positions are masked out of the backbone's own attention
  (the real tokens keep exactly the positions, masks and attention they have in the bare model),
  and every attention layer adds a gated second attention over the soft tokens' keys and values:
  ``out = attn(q, K, V) + g_{l,h} * softmax(q K_soft^T * scale) V_soft`` with one gate per layer
  and head, initialised to 0. An untrained adapter therefore leaves the backbone's outputs exactly
  as they are (one tenant or many); training opens the gates.
* ``"none"``: the soft tokens are ordinary positions of the sequence that every later token
  attends to in the same softmax (the paper's formulation). This changes the backbone from the
  first call: measured on SmolLM2 it raises the loss several-fold at initialisation.

Generator inputs and outputs: the hidden states are RMS-normalised per token before the
down-projection (``normalize_input``), so a massive activation such as the attention sink does not
swamp the pooling, and the soft tokens are rescaled to the median RMS of the instruction tokens'
hidden states of that layer (``token_scale="hidden_rms"``), so their keys and values are of the
size the layer is used to. ``share_projections=True`` shares the down- and up-projections across
layers (pooling queries and the rational activation stay per layer).

Which tokens are the instruction: ``instruction_mask`` (B, T) (bool, or 0/1 integers; -100, the
label padding value, counts as False). Without it, when per-token ``labels`` are given, the
instruction is every real token whose label is -100 (the prompt of an instruction/response pair);
otherwise every real token (``attention_mask``).

Outputs with a per-token axis (logits, ``last_hidden_state``, ``hidden_states``) come back with the
reserved positions removed, aligned with the caller's ``input_ids``; so do the sequences returned
by :meth:`IAPTModel.generate`. With a KV cache the soft tokens are computed once, at prefill;
decoding steps reuse the cached keys and values.

Serving layout. Without autograd (evaluation, ``generate``), a gated adapter on a LLaMA-style
decoder inserts no reserved positions at all: each layer's hook computes the soft tokens' keys and
values with the layer's own norm, projections and rotary embedding, beside the caller's sequence,
and the gated attention reads them from there. The outputs are those of the inline layout (tested);
the backbone then runs on exactly the bare model's tokens, key/value cache and MLP rows.

Several adapters can share the backbone (multi-tenant serving): ``tenant_ids`` names, per row,
the adapter that serves it, in :meth:`IAPTModel.forward` and :meth:`IAPTModel.generate`.
"""
import copy
import functools
import sys
import warnings
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Union

import torch
from torch import nn

from fastprompt.methods.base import (AdapterConfig, AdapterModel, AdapterNotFoundError, hidden_size,  # noqa: F401
                                     replace_sequences, takes_logits_to_keep, warn_once)
from fastprompt.nn.iapt import IAPTPromptGenerator, StackedGenerators, generate_per_row, generator_shape

# Default AdamW learning rate of the generators (see IAPTModel.param_groups); the gates use
# GATE_LR_SCALE times it.
DEFAULT_LR = 1e-3
GATE_LR_SCALE = 10.0

PLACEMENTS = ("after_first", "start", "after_instruction")
GATES = ("attention", "none")
TOKEN_SCALES = ("hidden_rms", "none")

# Attribute paths (from the wrapped model) of the layer stacks IAPT knows, and their kind.
LAYER_PATHS = (
    ("model.layers", "decoder"),          # LlamaForCausalLM / ForSequenceClassification, Mistral, Qwen2, ...
    ("layers", "decoder"),                # LlamaModel
    ("transformer.h", "decoder"),         # GPT2LMHeadModel, GPT2ForSequenceClassification
    ("h", "decoder"),                     # GPT2Model
    ("bert.encoder.layer", "encoder"),    # BertFor*
    ("roberta.encoder.layer", "encoder"),
    ("encoder.layer", "encoder"),         # BertModel, RobertaModel
)
# Attribute paths (from one layer) of its self-attention module.
ATTENTION_PATHS = ("self_attn", "attn", "attention.self")


@dataclass
class IAPTConfig(AdapterConfig):
    """Hyper-parameters of one IAPT adapter (the backbone fields are filled in from the model).

    num_tokens: soft tokens per layer (4 in the paper); bottleneck: width r of each generator;
    rational_degrees / rational_form / rational_init: the learnable activation of each layer;
    placement: where the reserved positions sit ("after_first", "start", "after_instruction");
    gate: "attention" (zero-initialised gated attention over the soft tokens) or "none";
    normalize_input: RMS-normalise the generator's input hidden states per token;
    token_scale: "hidden_rms" (soft tokens rescaled to the median RMS of the instruction's hidden
    states at that layer) or "none"; share_projections: one down- and up-projection for all layers;
    modules_to_save: backbone submodules (e.g. "classifier") trained and saved with the adapter.
    """

    num_tokens: int = 4
    bottleneck: int = 32
    rational_degrees: List[int] = field(default_factory=lambda: [5, 4])
    rational_form: str = "A"
    rational_init: str = "gelu"
    placement: str = "after_first"
    gate: str = "attention"
    normalize_input: bool = True
    token_scale: str = "hidden_rms"
    share_projections: bool = False
    modules_to_save: List[str] = field(default_factory=list)
    # backbone the adapter belongs to
    model_type: str = ""
    num_layers: int = 0
    d_model: int = 0
    num_heads: int = 0

    method = "iapt"
    BACKBONE_FIELDS = ("model_type", "num_layers", "d_model", "num_heads")

    def __post_init__(self):
        for name, allowed in (("placement", PLACEMENTS), ("gate", GATES), ("token_scale", TOKEN_SCALES)):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}: expected one of {list(allowed)}, got {getattr(self, name)!r}")
        self.modules_to_save = list(self.modules_to_save or [])
        self.rational_degrees = list(self.rational_degrees)

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        if "gate" not in data:  # written before gates existed: the original replacement at the start
            data.update(placement="start", gate="none", normalize_input=False, token_scale="none")
        return data


class IAPTAdapter(nn.Module):
    """The per-layer generators (and gates) of one IAPT adapter."""

    def __init__(self, config: IAPTConfig, device=None):
        super().__init__()
        self.config = config
        self.generators = nn.ModuleList([
            IAPTPromptGenerator(config.d_model, config.bottleneck, config.num_tokens,
                                rational_degrees=tuple(config.rational_degrees),
                                rational_form=config.rational_form,
                                rational_init=config.rational_init, device=device)
            for _ in range(config.num_layers)
        ])
        if config.share_projections:
            for g in self.generators[1:]:
                g.down = self.generators[0].down
                g.up = self.generators[0].up
        if config.gate == "attention":
            self.gates = nn.Parameter(torch.zeros(config.num_layers, max(config.num_heads, 1), device=device))
        else:
            self.gates = None
        if config.token_scale == "none":  # unscaled soft tokens: start small
            with torch.no_grad():
                for g in self.generators[:1] if config.share_projections else self.generators:
                    g.up.weight.mul_(0.1)
                    if g.up.bias is not None:
                        g.up.bias.zero_()
        self.saved_modules = nn.ModuleDict()  # modules_to_save, keyed by path with "." -> "__"

    def adapter_state_dict(self) -> Dict[str, torch.Tensor]:
        """State dict without the duplicate names of shared projections."""
        seen, state = set(), {}
        for name, tensor in self.state_dict(keep_vars=True).items():
            if id(tensor) in seen:
                continue
            seen.add(id(tensor))
            state[name] = tensor.detach()
        return state


def _resolve(model: nn.Module, path: str):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _set_submodule(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(_resolve(model, parent) if parent else model, name, module)


def find_layers(model: nn.Module):
    """(layers ModuleList, "decoder" | "encoder", attribute path) of a supported backbone."""
    for path, kind in LAYER_PATHS:
        layers = _resolve(model, path)
        if isinstance(layers, nn.ModuleList) and len(layers) > 0:
            return layers, kind, path
    raise ValueError(
        f"model: no supported transformer layers found in {type(model).__name__} (looked for "
        f"{', '.join(p for p, _ in LAYER_PATHS)}); IAPT supports LLaMA-family and GPT-2 decoders "
        "and BERT-family encoders")


# ---- the gated attention over the soft tokens --------------------------------------------------

ATTENTION_NAME = "fastprompt_iapt"
BATCH_KWARG = "fastprompt_iapt_batch"


@functools.lru_cache(maxsize=None)
def _inner_attention(module_type, inner_name):
    """The backbone's own attention function for modules of ``module_type`` configured with
    ``inner_name`` (looked up once: the gated attention runs at every layer of every decoding step)."""
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS

    default = getattr(sys.modules[module_type.__module__], "eager_attention_forward", None)
    if inner_name == "eager" or default is None:
        return default
    return ALL_ATTENTION_FUNCTIONS.get_interface(inner_name, default)


def _gated_attention(module, query, key, value, attention_mask, *args, **kwargs):
    """An attention implementation for transformers' AttentionInterface: the backbone's own
    implementation, plus the gated attention over the soft tokens while an IAPT call is active."""
    layer_index, inner_name, owners = module._fastprompt_iapt
    inner = _inner_attention(type(module), inner_name)
    # the layer hook passes the call's state down (so that a gradient-checkpointing recomputation
    # sees it too); otherwise look for the IAPT model wrapping this backbone that is inside a call
    batch = kwargs.pop(BATCH_KWARG, None)
    if batch is None:
        for ref in owners:
            owner = ref()
            if owner is not None and owner._batch is not None:
                batch = owner._batch
                break
    out, weights = inner(module, query, key, value, attention_mask, *args, **kwargs)
    if batch is None or batch.gates is None:
        return out, weights
    b, h, tq, dh = query.shape
    scaling = kwargs.get("scaling")
    if scaling is None:
        scaling = getattr(module, "scaling", None) or dh ** -0.5
    if key.shape[2] > tq:  # a decoding step (keys from the cache): the soft keys and values were fixed at prefill
        cached = batch.decode_kv.get(layer_index)
        if cached is not None:
            keys, gated_values = cached
            soft = nn.functional.scaled_dot_product_attention(query, keys, gated_values, scale=scaling)
            return out + soft.transpose(1, 2).to(out.dtype), weights
    gate = batch.gates[layer_index]  # (B, H) or (H,)
    if batch.side:
        k_soft, v_soft = batch.side_kv[layer_index]
    else:
        idx = batch.soft_positions  # (B, K)
        k_soft = key.gather(2, idx[:, None, :, None].expand(b, key.shape[1], idx.shape[1], key.shape[-1]))
        v_soft = value.gather(2, idx[:, None, :, None].expand(b, value.shape[1], idx.shape[1], value.shape[-1]))
    if k_soft.shape[1] != h:  # grouped-query attention
        k_soft = k_soft.repeat_interleave(h // k_soft.shape[1], dim=1)
        v_soft = v_soft.repeat_interleave(h // v_soft.shape[1], dim=1)
    # (B, H, K, Tq): the softmax over the K soft tokens then runs along a non-innermost axis,
    # vectorised over the queries (a softmax over an innermost axis of size K is about ten times slower)
    scores = torch.matmul(k_soft, query.transpose(-1, -2)).float() * scaling
    probs = torch.softmax(scores, dim=-2)
    dropout = kwargs.get("dropout", 0.0)
    if dropout and module.training:
        probs = nn.functional.dropout(probs, p=dropout)
    if tq == batch.length:
        sees = batch.sees_soft
    elif tq > batch.length:  # no cache, generated tokens appended
        sees = nn.functional.pad(batch.sees_soft, (0, tq - batch.length), value=True)
    else:  # a decoding step without the prefill's keys (generate() keeps them)
        sees = None
    # gate and query mask scale the (B, H, K, Tq) probabilities, K << head_dim
    g = gate.to(probs.dtype)
    g = g.view(1, h, 1, 1) if g.dim() == 1 else g.view(b, h, 1, 1)
    weight = g if sees is None else g * sees[:, None, None, :].to(probs.dtype)
    soft = torch.matmul((probs * weight).to(value.dtype).transpose(-1, -2), v_soft)  # (B, H, Tq, dh)
    if batch.caching and tq == batch.length and not torch.is_grad_enabled():
        # for the decoding steps of generate(): the values pre-gated (the gate scales every
        # probability of a (row, head), so it moves onto the values), both contiguous per head
        # (every step's attention then reads them in place)
        batch.decode_kv[layer_index] = (k_soft.contiguous(),
                                        (g.to(v_soft.dtype) * v_soft).expand(b, h, -1, -1).contiguous())
    return out + soft.transpose(1, 2).to(out.dtype), weights


def _register_attention():
    from transformers.modeling_utils import AttentionInterface

    if ATTENTION_NAME not in AttentionInterface._global_mapping:
        AttentionInterface.register(ATTENTION_NAME, _gated_attention)


class _SavedModule(nn.Module):
    """Stands in the backbone for a module of ``modules_to_save``: during an IAPT call it runs the
    serving adapter's trained copy, otherwise the original (frozen) module."""

    def __init__(self, original: nn.Module, owner, path: str):
        super().__init__()
        self.original = original
        self._owners = [owner]  # weak references to the IAPT models wrapping this backbone
        self.key = path.replace(".", "__")

    def add_owner(self, owner) -> None:
        self._owners = [r for r in self._owners if r() is not None and r() is not owner()] + [owner]

    def forward(self, *args, **kwargs):
        for ref in self._owners:
            owner = ref()
            batch = owner._batch if owner is not None else None
            if batch is not None:
                modules = owner.adapters[batch.tenants.names[0]].saved_modules
                if self.key in modules:
                    return modules[self.key](*args, **kwargs)
                break
        return self.original(*args, **kwargs)


class _Batch:
    """Per-call state the layer hooks and the attention read."""

    def __init__(self, soft_mask, soft_positions, sees_soft, instruction_mask, tenants, gates, side_column=None):
        # inline layout: the K reserved positions are in the sequence, L = T + K; side layout
        # (side_column given): the sequence is the caller's, L = T, and soft_mask is None
        self.soft_mask = soft_mask                # (B, L) bool, the reserved positions
        self.start = soft_positions[:, 0]         # (B,) long, the first reserved position
        self.soft_positions = soft_positions      # (B, K) long, index of each reserved position
        self.sees_soft = sees_soft                # (B, L) bool, queries that attend to the soft tokens
        self.instruction_mask = instruction_mask  # (B, L) bool
        self.tenants = tenants                    # _Tenants: the adapter of each row
        self.gates = gates                        # None or a function layer -> (B, H) / (H,) gate
        self.length = instruction_mask.shape[1]
        self.side = side_column is not None
        self.side_column = side_column            # (B,) long: the column whose position the soft tokens take
        self.side_kv = {}                         # layer -> (keys, values) (B, H_kv, K, dh) of the soft tokens
        self.caching = False                      # generate(): keep the soft keys / values of the prefill
        self.decode_kv = {}                       # layer -> (keys, gated values), (B, H, K, dh) each
        self.mlp_rows = None                      # (flat row index, length) of the MLP call in progress

    def real_columns(self, length: int) -> torch.Tensor:
        """(B, length - K) long: the positions of a (B, length) sequence that are not reserved."""
        k = self.soft_positions.shape[1]
        cols = torch.arange(length - k, device=self.start.device).unsqueeze(0)
        return cols + k * (cols >= self.start.unsqueeze(1))


class _Tenants:
    """The adapters of a batch's rows: ``names`` (the A adapters used, in order of first row),
    ``row_adapter`` (B,) long index into names (None for one adapter), and ``families``: the
    adapters whose generators run in one batched call (same shapes and input handling), each as
    (names, rows (LongTensor, or None for the whole batch), index of each of those rows into the
    family's names, per-layer :class:`StackedGenerators` over those names or None).

    ``serving``: None (a family holds the adapters its rows use), or a function kind ->
    (names, stacks) giving every loaded adapter of that kind with its stacked generators (calls
    without autograd then read the stored stacks instead of stacking per call)."""

    def __init__(self, adapters, row_names: List[str], device, serving=None):
        self.names = list(dict.fromkeys(row_names))
        position = {name: i for i, name in enumerate(self.names)}
        if len(self.names) == 1:
            self.row_adapter = None
            self.families = [(self.names, None, None, None)]
            return
        self.row_adapter = torch.tensor([position[n] for n in row_names], dtype=torch.long, device=device)
        by_kind: Dict[tuple, List[str]] = {}
        for name in self.names:
            by_kind.setdefault(_generator_kind(adapters[name]), []).append(name)
        self.families = []
        for kind, names in by_kind.items():
            stacks = None
            if serving is not None:
                names, stacks = serving(kind)
            local = {name: i for i, name in enumerate(names)}
            rows = [r for r, n in enumerate(row_names) if n in local]
            index = torch.tensor([local[row_names[r]] for r in rows], dtype=torch.long, device=device)
            rows = None if len(by_kind) == 1 else torch.tensor(rows, dtype=torch.long, device=device)
            self.families.append((names, rows, index, stacks))


def _generator_kind(adapter: IAPTAdapter) -> tuple:
    cfg = adapter.config
    return generator_shape(adapter.generators[0]) + (cfg.normalize_input, cfg.token_scale)


class _Gates:
    """Indexable by layer: the gate of each row's adapter."""

    def __init__(self, adapters, tenants: _Tenants):
        if tenants.row_adapter is None:
            self.single = adapters[tenants.names[0]].gates
        else:
            self.single = None
            self.table = torch.stack([adapters[name].gates for name in tenants.names])  # (A, layers, H)
            self.row_adapter = tenants.row_adapter

    def __getitem__(self, layer):
        if self.single is not None:
            return self.single[layer]
        return self.table[:, layer].index_select(0, self.row_adapter)


def _takes_per_row_logits_to_keep(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` as (B, N) positions per row (then the
    reserved positions never reach the LM head)."""
    try:
        from transformers import modeling_utils
    except ImportError:
        return False
    if not hasattr(modeling_utils, "slice_logits_to_keep"):  # older versions read a tensor as 1-D positions
        return False
    return takes_logits_to_keep(model)


def _side_modules(layers):
    """Per layer (input norm, attention module, rotary function) where every layer of a decoder
    computes its keys and values as LLaMA does (``input_layernorm``, then ``self_attn.k_proj`` /
    ``v_proj`` with an optional ``k_norm``, rotary embeddings from the ``position_embeddings``
    the model passes each layer); None otherwise."""
    import inspect

    modules = []
    for layer in layers:
        attn = getattr(layer, "self_attn", None)
        norm = getattr(layer, "input_layernorm", None)
        rotary = getattr(sys.modules.get(type(attn).__module__), "apply_rotary_pos_emb", None) if attn is not None \
            else None
        if norm is None or rotary is None or not all(isinstance(getattr(attn, n, None), nn.Linear)
                                                     for n in ("k_proj", "v_proj")) \
                or not isinstance(getattr(attn, "head_dim", None), int) \
                or "position_embeddings" not in inspect.signature(layer.forward).parameters:
            return None
        modules.append((norm, attn, rotary))
    return modules


class IAPTModel(AdapterModel):
    """A frozen transformers model with IAPT generators at every layer.

    Args:
        model: a transformers model: LLaMA family or GPT-2 (causal LM, sequence classification,
            base model) or BERT family (encoders).
        config: an :class:`IAPTConfig`; keyword arguments override its fields.
        adapter_name: name of the first adapter.

    Call it like the wrapped model, with the extra arguments ``instruction_mask`` (B, T) and
    ``tenant_ids`` (a sequence of adapter names, or of indices into :attr:`adapter_names`).
    Train with ``torch.optim.AdamW(model.param_groups())`` (learning rate :data:`DEFAULT_LR`).
    """

    config_class = IAPTConfig

    def __init__(self, model: nn.Module, config: Optional[IAPTConfig] = None, adapter_name: str = "default",
                 **config_kwargs):
        layers, kind, path = find_layers(model)
        super().__init__(model)
        self.kind, self.layer_path = kind, path
        self.num_layers = len(layers)
        self.d_model = hidden_size(model)
        cfg = model.config
        self.num_heads = int(getattr(cfg, "num_attention_heads", None) or getattr(cfg, "n_head", 0) or 0)
        self._batch: Optional[_Batch] = None
        self._stacks: Dict[tuple, tuple] = {}  # generator kind -> (names, per-layer StackedGenerators)
        self._hooks = [layer.register_forward_pre_hook(self._make_hook(i), with_kwargs=True)
                       for i, layer in enumerate(layers)]
        self._install_mlp_skip(layers)
        self._side_modules = _side_modules(layers) if self.kind == "decoder" else None
        self._install_attention(layers)
        self._logits_to_keep_rows = self.kind == "decoder" and _takes_per_row_logits_to_keep(model)
        self.add_adapter(adapter_name, config, **config_kwargs)

    def _install_attention(self, layers) -> None:
        """Route every layer's self-attention through :func:`_gated_attention` (which calls the
        backbone's own attention implementation first)."""
        self._attention_ok = False
        try:
            _register_attention()
        except ImportError:
            return
        modules = []
        for layer in layers:
            attn = None
            for p in ATTENTION_PATHS:
                attn = _resolve(layer, p)
                if attn is not None and getattr(attn, "config", None) is not None:
                    break
                attn = None
            if attn is None:
                return
            modules.append(attn)
        owner = weakref.ref(self)
        for i, attn in enumerate(modules):
            link = getattr(attn, "_fastprompt_iapt", None)
            if link is not None:  # this backbone was wrapped before: one more IAPT model on it
                link[2][:] = [r for r in link[2] if r() is not None] + [owner]
                continue
            inner = attn.config._attn_implementation or "eager"
            attn._fastprompt_iapt = (i, inner, [owner])
            local = copy.copy(attn.config)  # this module only: the model's own config (masks) is untouched
            local._attn_implementation_internal = ATTENTION_NAME
            attn.config = local
        self._attention_ok = True

    def _install_mlp_skip(self, layers) -> None:
        """Without autograd, a decoder layer's MLP runs on the real positions only: whatever it
        computes at a reserved position is replaced by the next layer's soft tokens (or, after the
        last layer, removed from the outputs), and the MLP is per token. The MLP then multiplies as
        many rows as in the bare model."""
        if self.kind != "decoder":
            return
        for layer in layers:
            mlp = getattr(layer, "mlp", None)
            # the transformers MLP blocks (LlamaMLP, Qwen2MLP, GPT2MLP, ...) map (B, T, d) to (B, T, d)
            if isinstance(mlp, nn.Module) and type(mlp).__name__.endswith("MLP"):
                self._hooks.append(mlp.register_forward_pre_hook(self._mlp_real_rows))
                self._hooks.append(mlp.register_forward_hook(self._mlp_scatter_back))

    def _mlp_real_rows(self, module, args):
        batch = self._batch
        if batch is None or batch.side or torch.is_grad_enabled() or len(args) != 1:
            return None
        hidden = args[0]
        if not isinstance(hidden, torch.Tensor) or hidden.dim() != 3 or hidden.shape[1] < batch.length \
                or hidden.shape[0] != batch.soft_mask.shape[0]:
            return None  # a decoding step: no reserved positions in it
        rows, length = hidden.shape[0], hidden.shape[1]
        # whole rows of the flattened (B * L, d) tensor: index_select / index_copy move them with
        # one copy each, where a gather over (B, L, d) would read an index per element
        flat = (batch.real_columns(length) + length * torch.arange(rows, device=hidden.device).unsqueeze(1)).flatten()
        batch.mlp_rows = (flat, length)
        return (hidden.reshape(rows * length, -1).index_select(0, flat).view(rows, length - self.num_tokens, -1),)

    def _mlp_scatter_back(self, module, args, output):
        batch = self._batch
        state = batch.mlp_rows if batch is not None else None
        if state is None:
            return None
        batch.mlp_rows = None
        flat, length = state
        rows, width = output.shape[0], output.shape[-1]
        full = output.new_zeros(rows * length, width).index_copy_(0, flat, output.reshape(-1, width))
        return full.view(rows, length, width)

    # ---- adapters ----------------------------------------------------------------------------
    @property
    def loss_type(self) -> Optional[str]:
        """What transformers.Trainer reads to count a batch's targets (``num_items_in_batch``, by
        which the loss is divided): a causal LM's per-token loss is computed here on shifted
        targets (``labels[:, 1:]``), so the Trainer must count those, not every label. (Without it
        the count includes the first column, and the loss comes out too small wherever that
        column is supervised; the Trainer gathers the count over all ranks, so it also sets the
        weight of each rank's loss under DDP.)"""
        if self.kind == "decoder" and self.base_model.can_generate():
            return "ForCausalLM"
        return getattr(self.base_model, "loss_type", None)

    @property
    def num_tokens(self) -> int:
        return self.adapter_config.num_tokens

    def _backbone_fields(self) -> dict:
        return {"model_type": self.model_type, "num_layers": self.num_layers, "d_model": self.d_model,
                "num_heads": self.num_heads}

    @classmethod
    def _check_backbone(cls, cfg: IAPTConfig, model: nn.Module, source) -> None:
        layers, _, _ = find_layers(model)
        d_model = hidden_size(model)
        if cfg.num_layers != len(layers) or cfg.d_model != d_model:
            model_type = str(getattr(model.config, "model_type", ""))
            raise ValueError(
                f"adapter in {source} was trained for a backbone with {cfg.num_layers} layers and hidden "
                f"size {cfg.d_model} (model_type {cfg.model_type!r}); this model has {len(layers)} "
                f"layers and hidden size {d_model} (model_type {model_type!r})")

    def _check_compatible(self, cfg: IAPTConfig) -> None:
        if not self.adapters:
            return
        first = next(iter(self.adapter_configs.values()))
        if cfg.num_tokens != first.num_tokens:
            raise ValueError(f"num_tokens: every adapter on one backbone must use the same number of soft "
                             f"tokens ({first.num_tokens}), got {cfg.num_tokens}")
        for name in ("placement", "gate"):
            if getattr(cfg, name) != getattr(first, name):
                raise ValueError(f"{name}: every adapter on one backbone must use the same {name} "
                                 f"({getattr(first, name)!r}), got {getattr(cfg, name)!r}")

    def _check_same_config(self, mine: IAPTConfig, saved: IAPTConfig, source) -> None:
        if saved.hyper_parameters() != mine.hyper_parameters():
            raise ValueError(f"directory: the adapter in {source} has a different config from the model's adapter "
                             f"(saved {saved.hyper_parameters()}, model {mine.hyper_parameters()})")

    def _build_adapter(self, cfg: IAPTConfig) -> IAPTAdapter:
        """A freshly initialised adapter (on the backbone's device, float32)."""
        self._check_compatible(cfg)
        if cfg.gate == "attention" and not self._attention_ok:
            raise ValueError("gate: this backbone's attention could not be wrapped for the gated soft-token "
                             "attention; use gate='none'")
        device = next(self.base_model.parameters()).device
        adapter = IAPTAdapter(cfg, device=device)
        for path in cfg.modules_to_save:
            module = _resolve(self.base_model, path)
            if module is None or not isinstance(module, nn.Module):
                raise ValueError(f"modules_to_save: the model has no submodule {path!r}")
            if not isinstance(module, _SavedModule):
                module = _SavedModule(module, weakref.ref(self), path)
                _set_submodule(self.base_model, path, module)
            else:
                module.add_owner(weakref.ref(self))
            saved = copy.deepcopy(module.original)
            for p in saved.parameters():
                p.requires_grad_(True)
            adapter.saved_modules[module.key] = saved
        return adapter

    def _adapter_tensors(self, name: str) -> Dict[str, torch.Tensor]:
        return self.adapters[name].adapter_state_dict()

    def save_adapter(self, directory: Union[str, Path], adapter_name: Optional[str] = None) -> None:
        """Deprecated: ``save_pretrained(directory, adapter_name)``."""
        warnings.warn("IAPTModel.save_adapter is deprecated; use save_pretrained(directory, adapter_name)",
                      DeprecationWarning, stacklevel=2)
        self.save_pretrained(directory, adapter_name or self.active_adapter)

    # ---- optimisation ------------------------------------------------------------------------
    def param_groups(self, lr: Optional[float] = None, gate_lr: Optional[float] = None,
                     weight_decay: float = 0.0, adapter_name: Optional[str] = None, scale: float = 1.0):
        """Optimizer parameter groups: generators (and modules_to_save) at ``lr`` (default
        :data:`DEFAULT_LR`), gates at ``gate_lr`` (default ``GATE_LR_SCALE * lr``), no weight decay
        by default; ``scale`` multiplies both (a learning-rate sweep around the defaults).
        ``torch.optim.AdamW(model.param_groups())`` trains every adapter (or only ``adapter_name``)."""
        for name, value in (("lr", lr), ("gate_lr", gate_lr), ("scale", scale)):
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name}: expected a non-negative number, got {value!r}")
        lr = DEFAULT_LR if lr is None else float(lr)
        gate_lr = GATE_LR_SCALE * lr if gate_lr is None else float(gate_lr)
        lr, gate_lr = lr * scale, gate_lr * scale
        names = [adapter_name] if adapter_name else self.adapter_names
        main, gates = [], []
        for name in names:
            self._check_adapter(name)
            adapter = self.adapters[name]
            gate = adapter.gates
            for p in adapter.parameters():
                if not p.requires_grad:
                    continue
                (gates if p is gate else main).append(p)
        groups = [{"params": main, "lr": lr, "weight_decay": weight_decay, "name": "iapt_generators"}]
        if gates:
            groups.append({"params": gates, "lr": gate_lr, "weight_decay": 0.0, "name": "iapt_gates"})
        return groups

    # ---- inputs ------------------------------------------------------------------------------
    def _tenants(self, tenant_ids, batch: int, device) -> _Tenants:
        if tenant_ids is None:
            return _Tenants(self.adapters, [self.active_adapter], device)
        serving = None if torch.is_grad_enabled() else self._serving_stacks
        tenants = _Tenants(self.adapters, self.tenant_names(tenant_ids, batch), device, serving)
        with_modules = [n for n in tenants.names if self.adapters[n].config.modules_to_save]
        if with_modules and len(tenants.names) > 1:
            raise ValueError(f"tenant_ids: adapters with modules_to_save ({with_modules}) replace backbone "
                             "modules and cannot share a batch with other adapters; run them separately")
        return tenants

    def _serving_stacks(self, kind: tuple):
        """(names, per-layer StackedGenerators) of every loaded adapter of generator ``kind``,
        stacked on first use and again after adapters of that kind were added, removed or moved."""
        names = [n for n, adapter in self.adapters.items() if _generator_kind(adapter) == kind]
        cached = self._stacks.get(kind)
        if cached is None or cached[0] != names or not cached[1][0].is_current():
            storage = {}  # parameters shared across layers (share_projections) are stacked once
            stacks = [StackedGenerators([self.adapters[n].generators[layer] for n in names], storage)
                      for layer in range(self.num_layers)]
            self._stacks[kind] = cached = (names, stacks)
        return cached

    def _release_stacks(self) -> None:
        """Give every stacked parameter its own storage again, so that the stacks are freed (an
        adapter that leaves would otherwise keep its rows alive until the next restacking)."""
        with torch.no_grad():
            for _, stacks in self._stacks.values():
                for p in {id(p): p for stack in stacks for g in stack.generators for p in g.parameters()}.values():
                    p.data = p.data.clone()
        self._stacks = {}

    def delete_adapter(self, name: str) -> None:
        super().delete_adapter(name)
        self._release_stacks()

    def _apply(self, fn, *args, **kwargs):
        self._stacks = {}  # moved parameters leave their stacks
        return super()._apply(fn, *args, **kwargs)

    def _soft_start(self, attention_mask, instruction):
        """(start, first), (B,) long each: the column before which the K soft tokens go (by
        ``placement``), and the first real token, whose position the soft tokens take."""
        length = attention_mask.shape[1]
        first = attention_mask.bool().int().argmax(dim=1)  # 0 for a row without a real token
        placement = self.adapter_config.placement
        if placement == "start":
            start = first
        elif placement == "after_instruction":
            cols = torch.arange(length, device=attention_mask.device)
            last = torch.where(instruction, cols, torch.full_like(cols, -1)).amax(dim=1)
            start = torch.where(last >= 0, last + 1, first + 1)
        else:
            start = first + 1
        return start.clamp(max=length), first

    def _insert_positions(self, input_ids, start, first):
        """The inline layout's K reserved positions before column ``start``: (soft mask (B, L),
        source index (B, L)) with L = T + K."""
        length = input_ids.shape[1]
        k = self.num_tokens
        pos = torch.arange(length + k, device=input_ids.device).unsqueeze(0)
        rel = pos - start.unsqueeze(1)
        soft = (rel >= 0) & (rel < k)
        # a reserved position copies the first real token (its id is never a padding id)
        source = torch.where(rel < 0, pos, torch.where(soft, first.unsqueeze(1), pos - k))
        source = source.clamp(max=max(length - 1, 0))
        return soft, source

    def _instruction(self, input_ids, attention_mask, instruction_mask, labels):
        real = attention_mask.bool()
        if instruction_mask is not None:
            if instruction_mask.shape != input_ids.shape:
                raise ValueError(f"instruction_mask: expected shape {tuple(input_ids.shape)} (that of input_ids), "
                                 f"got {tuple(instruction_mask.shape)}")
            im = instruction_mask if instruction_mask.dtype == torch.bool else (instruction_mask > 0)
            im = im & real
            empty = real.any(dim=1) & ~im.any(dim=1)
            if bool(empty.any()):
                rows = empty.nonzero().flatten().tolist()
                raise ValueError(f"instruction_mask: rows {rows[:8]} mark no real token as instruction (all False); "
                                 "mark the prompt tokens True, or pass instruction_mask=None to use every real token")
            return im
        if labels is not None and labels.shape == input_ids.shape and not labels.is_floating_point():
            im = real & (labels == -100)
            if bool((real.any(dim=1) & ~im.any(dim=1)).any()):
                warn_once(self, "nomask",
                           "instruction_mask: training with labels but without instruction_mask, and the labels "
                           "supervise every token, so the soft tokens are generated from the whole input, answer "
                           "included. Pass instruction_mask (True on the prompt), or set the prompt's labels to "
                           "-100 (then the prompt is the instruction).")
                return real
            return im
        return real

    def _check_labels(self, labels, input_ids):
        if labels is None:
            return
        batch, length = input_ids.shape
        if labels.dim() == 0 or labels.shape[0] != batch:
            raise ValueError(f"labels: expected one row per input row ({batch}), got shape {tuple(labels.shape)}")
        if labels.dim() == 2 and not labels.is_floating_point() and labels.shape[1] != length:
            raise ValueError(f"labels: expected shape {tuple(input_ids.shape)} (that of input_ids, -100 on tokens "
                             f"without a target) for per-token labels, or ({batch},) for classification; got "
                             f"{tuple(labels.shape)}")
        if labels.dim() > 2:
            raise ValueError(f"labels: expected shape {tuple(input_ids.shape)} or ({batch},), got {tuple(labels.shape)}")

    def _prepare(self, input_ids, attention_mask, instruction_mask, labels, token_type_ids, tenant_ids,
                 position_ids=None, generation=False):
        if input_ids is None or not isinstance(input_ids, torch.Tensor) or input_ids.dim() != 2:
            raise ValueError("input_ids: expected a (batch, tokens) tensor")
        batch, length = input_ids.shape
        if length == 0:
            raise ValueError("input_ids: expected at least one token per row")
        given_mask = attention_mask
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask: expected shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
        self._check_labels(labels, input_ids)
        instruction = self._instruction(input_ids, attention_mask, instruction_mask, labels)
        tenants = self._tenants(tenant_ids, batch, input_ids.device)
        start, first = self._soft_start(attention_mask, instruction)
        soft_positions = start.unsqueeze(1) + torch.arange(self.num_tokens, device=input_ids.device)
        gated = self.adapter_config.gate == "attention"
        if self._uses_side_layout():
            # the backbone runs on the caller's sequence; the soft tokens' keys and values are
            # computed beside it (their position is that of the first real token, as in the inline layout)
            out = {"input_ids": input_ids, "attention_mask": given_mask}
            for key, value in (("token_type_ids", token_type_ids), ("labels", labels), ("position_ids", position_ids)):
                if value is not None:
                    out[key] = value
            cols = torch.arange(length, device=input_ids.device).unsqueeze(0)
            sees = attention_mask.bool() & (cols >= start.unsqueeze(1))
            return out, _Batch(None, soft_positions, sees, instruction, tenants, _Gates(self.adapters, tenants),
                               side_column=first)
        soft, source = self._insert_positions(input_ids, start, first)

        def spread(t, fill=None):
            t = t.gather(1, source)
            return t if fill is None else torch.where(soft, torch.full_like(t, fill), t)

        out = {"input_ids": spread(input_ids),
               # gated: the reserved positions are invisible to the backbone's own attention
               "attention_mask": spread(attention_mask, 0 if gated else 1)}
        if token_type_ids is not None:
            out["token_type_ids"] = spread(token_type_ids)
        if labels is not None:
            out["labels"] = spread(labels, -100) if labels.shape == input_ids.shape else labels
        if gated:
            # the real tokens keep the positions they have in the bare model
            if position_ids is None:
                if generation:
                    position_ids = (attention_mask.long().cumsum(-1) - 1).masked_fill(attention_mask == 0, 0)
                else:
                    position_ids = torch.arange(length, device=input_ids.device).expand(batch, length)
            out["position_ids"] = spread(position_ids.expand(batch, length))
        elif position_ids is not None:
            out["position_ids"] = spread(position_ids.expand(batch, length))
        positions = torch.arange(length + self.num_tokens, device=input_ids.device).unsqueeze(0)
        if self.kind == "decoder":
            sees = positions >= start.unsqueeze(1) + self.num_tokens
        else:
            sees = torch.ones_like(soft)
        sees = sees & ~soft & spread(attention_mask.bool(), False)
        instruction = spread(instruction, False)
        gates = _Gates(self.adapters, tenants) if gated else None
        return out, _Batch(soft, soft_positions, sees, instruction, tenants, gates)

    # ---- the per-layer replacement -----------------------------------------------------------
    def _make_hook(self, layer_index: int):
        def hook(module, args, kwargs):
            batch = self._batch
            if batch is None:
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            if batch.side:
                if layer_index in batch.side_kv:  # a later step of generate(): the soft tokens depend on the
                    return None                   # instruction only, which precedes every new token
                self._check_rows(hidden, batch)
                batch.side_kv[layer_index] = self._side_keys_values(layer_index, hidden, batch, kwargs)
                return args, dict(kwargs, **{BATCH_KWARG: batch})
            if hidden.shape[1] < batch.length:  # a decoding step: the soft tokens are in the cache (and the
                return None                     # attention finds the call's state through its owner)
            kwargs = dict(kwargs)
            if batch.gates is not None:
                kwargs[BATCH_KWARG] = batch
            self._check_rows(hidden, batch)
            new_hidden = self._replace(layer_index, hidden, batch)
            if args:
                return (new_hidden,) + tuple(args[1:]), kwargs
            kwargs["hidden_states"] = new_hidden
            return args, kwargs
        return hook

    def _uses_side_layout(self) -> bool:
        """Whether this call runs the side layout: the soft tokens' keys and values computed beside
        the caller's sequence instead of at K reserved positions inside it. The two compute the
        same keys, values and outputs; the side layout spends nothing on reserved positions (their
        queries, MLP rows, attention columns) and its key/value cache is the bare model's. It
        needs a gated adapter on a LLaMA-style decoder, and runs without autograd (serving,
        evaluation): a frozen backbone's layers then see no input that requires grad, which
        reentrant gradient checkpointing needs."""
        return (self._side_modules is not None and self._attention_ok and self.adapter_config.gate == "attention"
                and not torch.is_grad_enabled())

    @staticmethod
    def _check_rows(hidden, batch: _Batch) -> None:
        if hidden.shape[0] != batch.instruction_mask.shape[0]:
            raise RuntimeError("IAPT: the batch size changed inside the model call (beam search or "
                               "num_return_sequences > 1 are not supported)")

    def _side_keys_values(self, layer_index: int, hidden, batch: _Batch, layer_kwargs):
        """Side layout: the soft tokens' keys and values at layer ``layer_index``, (B, H_kv, K, dh)
        each, computed with the layer's own norm, projections and rotary embedding (at the
        position of ``batch.side_column``), as the layer computes them for a reserved position
        of the inline layout."""
        norm, attn, rotary = self._side_modules[layer_index]
        tokens = self._soft_tokens(layer_index, hidden, batch)  # (B, K, d)
        x = norm(tokens.to(hidden.dtype))
        b, k, _ = x.shape
        keys = attn.k_proj(x).view(b, k, -1, attn.head_dim)
        if isinstance(getattr(attn, "k_norm", None), nn.Module):
            keys = attn.k_norm(keys)
        keys = keys.transpose(1, 2)
        values = attn.v_proj(x).view(b, k, -1, attn.head_dim).transpose(1, 2)
        cos, sin = layer_kwargs["position_embeddings"]  # (B or 1, T, dh)
        column = batch.side_column.view(b, 1, 1).expand(b, 1, cos.shape[-1])
        cos = cos.expand(b, -1, -1).gather(1, column)
        sin = sin.expand(b, -1, -1).gather(1, column)
        _, keys = rotary(keys, keys, cos, sin)
        return keys, values

    def _generate_tokens(self, adapters: List[IAPTAdapter], index, layer_index: int, hidden, mask, stack=None):
        """Soft tokens (b, K, d) of the rows of ``hidden`` (b, T, d), row i from adapter
        ``adapters[index[i]]`` (index None: one adapter), in one batched computation (``stack``:
        the layer's StackedGenerators over ``adapters``, or None to stack per call)."""
        cfg = adapters[0].config
        generator = adapters[0].generators[layer_index]
        dtype = generator.down.weight.dtype
        mean_square = None
        if cfg.normalize_input or cfg.token_scale == "hidden_rms":
            wide = torch.promote_types(hidden.dtype, torch.float32)
            mean_square = torch.linalg.vector_norm(hidden, dim=-1, keepdim=True, dtype=wide).square() / hidden.shape[-1]
        input_scale = torch.rsqrt(mean_square + 1e-6).to(dtype) if cfg.normalize_input else None  # (b, T, 1)
        if index is None:
            tokens = generator(hidden.to(dtype), mask, input_scale=input_scale)  # (b, K, d)
        else:
            generators = stack if stack is not None else [a.generators[layer_index] for a in adapters]
            tokens = generate_per_row(generators, index, hidden.to(dtype), mask, input_scale=input_scale)
        if cfg.token_scale == "hidden_rms":
            with torch.no_grad():
                rms = mean_square.detach().squeeze(-1).sqrt()  # (b, T)
                rms = torch.where(mask, rms, torch.full_like(rms, float("nan")))
                target = torch.nan_to_num(rms.nanmedian(dim=1).values, nan=1.0)  # (b,)
            tokens = tokens * torch.rsqrt(tokens.pow(2).mean(-1, keepdim=True) + 1e-12)
            tokens = tokens * target.to(tokens.dtype)[:, None, None]
        return tokens

    def _soft_tokens(self, layer_index: int, hidden, batch: _Batch):
        extra = hidden.shape[1] - batch.length
        mask = batch.instruction_mask
        if extra:
            mask = torch.nn.functional.pad(mask, (0, extra), value=False)
        tokens = None
        for names, rows, index, stacks in batch.tenants.families:
            adapters = [self.adapters[name] for name in names]
            stack = stacks[layer_index] if stacks is not None else None
            if rows is None:
                return self._generate_tokens(adapters, index, layer_index, hidden, mask, stack)
            # adapters of different generator shapes: one batched call per shape
            part = self._generate_tokens(adapters, index, layer_index, hidden.index_select(0, rows),
                                         mask.index_select(0, rows), stack)
            if tokens is None:
                tokens = part.new_zeros(hidden.shape[0], part.shape[1], part.shape[2])
            tokens = tokens.index_copy(0, rows, part)
        return tokens

    def _replace(self, layer_index: int, hidden, batch: _Batch):
        tokens = self._soft_tokens(layer_index, hidden, batch).to(hidden.dtype)  # (B, K, d)
        rows = torch.arange(hidden.shape[0], device=hidden.device).unsqueeze(1)
        # out of place: the backward touches the B*K reserved rows only
        return hidden.index_put((rows, batch.soft_positions), tokens)

    def _strip(self, tensor, soft):
        """Drop the reserved positions from a (B, L, ...) tensor."""
        batch, length = soft.shape
        keep = ~soft
        return tensor[keep].reshape(batch, length - self.num_tokens, *tensor.shape[2:])

    # ---- calls -------------------------------------------------------------------------------
    def forward(self, input_ids=None, attention_mask=None, instruction_mask=None, labels=None,
                token_type_ids=None, tenant_ids=None, position_ids=None, **kwargs):
        """The wrapped model's forward with IAPT soft tokens at every layer.

        input_ids, attention_mask, instruction_mask, token_type_ids, position_ids: (B, T); labels:
        (B, T) for causal LM (-100 where there is no target) or (B,) for classification;
        tenant_ids: B adapter names or indices. Per-token outputs (logits, last_hidden_state,
        hidden_states) are returned with the reserved positions removed.
        """
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError("inputs_embeds: not supported by IAPTModel; pass input_ids")
        inputs, batch = self._prepare(input_ids, attention_mask, instruction_mask, labels, token_type_ids, tenant_ids,
                                      position_ids)
        length = input_ids.shape[1]
        # decoders with per-token labels: the loss is computed here, on the logits without the reserved
        # positions (inside the backbone a token after the reserved block would be predicted from a
        # reserved position's output)
        own_loss = (self.kind == "decoder" and labels is not None and labels.shape == input_ids.shape
                    and not labels.is_floating_point())
        num_items = kwargs.pop("num_items_in_batch", None) if own_loss else None
        if own_loss:
            inputs.pop("labels")
        if self._logits_to_keep_rows and kwargs.get("logits_to_keep") is None and not batch.side:
            # the LM head projects the caller's positions only: column j of input_ids sits at
            # position j before the reserved block and at j + K after it
            kwargs["logits_to_keep"] = batch.real_columns(length + self.num_tokens)
        self._batch = batch
        try:
            output = self.base_model(**inputs, **kwargs)
        finally:
            self._batch = None
        if not batch.side:
            output = self._strip_output(output, batch)
        if own_loss and getattr(output, "logits", None) is not None and output.logits.dim() == 3:
            logits = output.logits.float()
            # shift the targets rather than the logits (no copy of the (B, T, vocab) logits)
            target = nn.functional.pad(labels[:, 1:], (0, 1), value=-100).to(logits.device)
            loss = nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1),
                                               ignore_index=-100, reduction="sum")
            count = num_items if num_items is not None else (target != -100).sum()
            output.loss = loss / count
        return output

    def _strip_output(self, output, batch: _Batch):
        def per_token(t):
            return isinstance(t, torch.Tensor) and t.dim() >= 3 and t.shape[0] == batch.soft_mask.shape[0] \
                and t.shape[1] == batch.length

        for key in ("logits", "last_hidden_state"):
            value = getattr(output, key, None)
            if per_token(value):
                setattr(output, key, self._strip(value, batch.soft_mask))
        hidden_states = getattr(output, "hidden_states", None)
        if isinstance(hidden_states, (tuple, list)):
            output.hidden_states = type(hidden_states)(
                self._strip(h, batch.soft_mask) if per_token(h) else h for h in hidden_states)
        return output

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, instruction_mask=None, tenant_ids=None, **kwargs):
        """``generate()`` of the wrapped causal LM; the soft tokens are computed once at prefill.

        Returns the sequences (B, T + new tokens) without the reserved positions (or, with
        ``return_dict_in_generate=True``, the output object with its ``sequences`` stripped).
        ``max_length`` / ``min_length`` count the caller's tokens only. Greedy or sampling with one
        sequence per row (no beam search). Prompts must be left-padded."""
        if self.kind != "decoder":
            raise ValueError("generate: IAPT generation needs a decoder (LLaMA family or GPT-2)")
        if kwargs.get("num_beams", 1) != 1 or kwargs.get("num_return_sequences", 1) != 1:
            raise ValueError("generate: IAPT supports num_beams=1 and num_return_sequences=1")
        if self.adapter_config.placement == "after_instruction":
            raise ValueError("placement: 'after_instruction' puts the reserved positions at the end of a prompt, "
                             "where generation reads the next token; generate with placement 'after_first'")
        if attention_mask is not None and isinstance(attention_mask, torch.Tensor) and attention_mask.dim() == 2 \
                and attention_mask.shape[1] > 0 and bool((attention_mask[:, -1] == 0).any()):
            warn_once(self, "rightpad",
                       "attention_mask: some prompts passed to generate are right-padded (last column is padding); "
                       "new tokens then follow the padding. Pad prompts on the left (tokenizer.padding_side = 'left').")
        position_ids = kwargs.pop("position_ids", None)
        inputs, batch = self._prepare(input_ids, attention_mask, instruction_mask, None, None, tenant_ids,
                                      position_ids, generation=True)
        if not batch.side:  # lengths count the caller's tokens: add the reserved positions
            k = self.num_tokens
            generation_config = kwargs.get("generation_config") or getattr(self.base_model, "generation_config", None)
            if kwargs.get("max_length") is not None:
                kwargs["max_length"] = kwargs["max_length"] + k
            elif kwargs.get("max_new_tokens") is None and generation_config is not None \
                    and getattr(generation_config, "max_new_tokens", None) is None \
                    and getattr(generation_config, "max_length", None) is not None:
                kwargs["max_length"] = generation_config.max_length + k
            if kwargs.get("min_length"):
                kwargs["min_length"] = kwargs["min_length"] + k
        batch.caching = True
        self._batch = batch
        try:
            result = self.base_model.generate(**inputs, **kwargs)
        finally:
            self._batch = None
        if batch.side:
            return result
        sequences = result if isinstance(result, torch.Tensor) else result.sequences
        extra = sequences.shape[1] - batch.length
        soft = torch.nn.functional.pad(batch.soft_mask, (0, extra), value=False)
        return replace_sequences(result, self._strip(sequences, soft))

    def unload(self) -> nn.Module:
        """Detach IAPT from the backbone (hooks, attention routing, modules_to_save stand-ins) and
        return the backbone as it was before wrapping (adapters are discarded)."""
        for hook in self._hooks:
            hook.remove()
        self._hooks = []
        layers, _, _ = find_layers(self.base_model)
        me = weakref.ref(self)
        for layer in layers:
            for path in ATTENTION_PATHS:
                attn = _resolve(layer, path)
                link = getattr(attn, "_fastprompt_iapt", None) if attn is not None else None
                if link is None:
                    continue
                link[2][:] = [r for r in link[2] if r() is not None and r() is not self]
                if not link[2]:
                    attn.config = self.base_model.config
                    del attn._fastprompt_iapt
                break
        for name, module in list(self.base_model.named_modules()):
            if isinstance(module, _SavedModule):
                module._owners = [r for r in module._owners if r() is not None and r() is not self]
                if not module._owners:
                    _set_submodule(self.base_model, name, module.original)
        del me
        return self.base_model

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, layers={self.num_layers} ({self.layer_path}), d_model={self.d_model}, "
                f"adapters={self.adapter_names}, active={self.active_adapter!r}")
