"""IAPT, instruction-aware prompt tuning (arXiv 2405.18203), on Hugging Face transformers models.

Every transformer layer l of a frozen backbone gets its own :class:`IAPTPromptGenerator`. At the
input of layer l the generator reads that layer's input hidden states of the instruction tokens
and produces ``num_tokens`` soft tokens, which replace the hidden states of ``num_tokens``
reserved positions before the layer runs. Only the generators train.

Where the reserved positions sit. :class:`IAPTModel` inserts them itself, per row:

* decoders (LLaMA family, GPT-2): immediately before the first real token (after any left
  padding), so the whole instruction and everything generated after it attend to them;
* encoders (BERT family): immediately after the first real token, so ``[CLS]`` stays at
  position 0 for the pooler.

Their attention-mask entries are 1, their labels -100. Outputs with a per-token axis (logits)
come back with the reserved positions removed, aligned with the caller's ``input_ids``; so do the
sequences returned by :meth:`IAPTModel.generate`. With a KV cache the soft tokens are computed
once, at prefill; decoding steps reuse the cached keys and values.

Which tokens are the instruction: ``instruction_mask`` (B, T) bool; by default every real token
(``attention_mask``). For causal-LM training on instruction + response, pass an instruction mask
that excludes the response, otherwise the soft tokens see the answer.

Several adapters can share the backbone (multi-tenant serving): ``tenant_ids`` names, per row,
the adapter that serves it, in :meth:`IAPTModel.forward` and :meth:`IAPTModel.generate`.
"""
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from fastprompt.nn.iapt import IAPTPromptGenerator

CONFIG_NAME = "iapt_config.json"
WEIGHTS_NAME = "iapt_generators.safetensors"

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


@dataclass
class IAPTConfig:
    """Hyper-parameters of one IAPT adapter (the backbone fields are filled in from the model)."""

    num_tokens: int = 4
    bottleneck: int = 32
    rational_degrees: List[int] = field(default_factory=lambda: [5, 4])
    rational_form: str = "A"
    rational_init: str = "gelu"
    # backbone the adapter belongs to
    model_type: str = ""
    num_layers: int = 0
    d_model: int = 0

    def to_dict(self) -> dict:
        return {"method": "iapt", **asdict(self)}

    @classmethod
    def from_dict(cls, data: dict) -> "IAPTConfig":
        data = dict(data)
        if data.pop("method", "iapt") != "iapt":
            raise ValueError(f"config: expected an IAPT adapter config, got method {data.get('method')!r}")
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown IAPT config fields {unknown}")
        return cls(**data)


class IAPTAdapter(nn.Module):
    """The per-layer generators of one trained IAPT adapter."""

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
        with torch.no_grad():  # start with small soft tokens: a gentle change of the backbone
            for g in self.generators:
                g.up.weight.mul_(0.1)
                if g.up.bias is not None:
                    g.up.bias.zero_()


def _resolve(model: nn.Module, path: str):
    obj = model
    for part in path.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


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


class _Batch:
    """Per-call state the layer hooks read: where the reserved positions are, which tokens are
    the instruction, and which rows each adapter serves."""

    def __init__(self, soft_mask, soft_index, instruction_mask, groups):
        self.soft_mask = soft_mask                # (B, L) bool, the reserved positions
        self.soft_index = soft_index              # (B, L) long, soft token 0..K-1 at each position
        self.instruction_mask = instruction_mask  # (B, L) bool
        self.groups = groups                      # [(adapter name, rows LongTensor or None)]
        self.length = soft_mask.shape[1]


class IAPTModel(nn.Module):
    """A frozen transformers model with IAPT generators at every layer.

    Args:
        model: a transformers model: LLaMA family or GPT-2 (causal LM, sequence classification,
            base model) or BERT family (encoders).
        config: an :class:`IAPTConfig`; keyword arguments override its fields.
        adapter_name: name of the first adapter.

    Call it like the wrapped model, with the extra arguments ``instruction_mask`` (B, T) bool
    and ``tenant_ids`` (a sequence of adapter names, or of indices into :attr:`adapter_names`).
    """

    def __init__(self, model: nn.Module, config: Optional[IAPTConfig] = None, adapter_name: str = "default",
                 **config_kwargs):
        super().__init__()
        layers, kind, path = find_layers(model)
        self.base_model = model
        self.kind, self.layer_path = kind, path
        self.num_layers = len(layers)
        hidden = getattr(model.config, "hidden_size", None) or getattr(model.config, "n_embd", None)
        if not hidden:
            raise ValueError("model: its config has no hidden_size")
        self.d_model = int(hidden)
        self.model_type = str(getattr(model.config, "model_type", ""))
        for p in model.parameters():
            p.requires_grad_(False)
        self.adapters = nn.ModuleDict()
        self.active_adapter = adapter_name
        self._batch: Optional[_Batch] = None
        self._hooks = [layer.register_forward_pre_hook(self._make_hook(i), with_kwargs=True)
                       for i, layer in enumerate(layers)]
        self.add_adapter(adapter_name, config, **config_kwargs)

    # ---- adapters ----------------------------------------------------------------------------
    @property
    def config(self):
        """The backbone's config (what training utilities such as Trainer look for)."""
        return self.base_model.config

    @property
    def adapter_names(self) -> List[str]:
        return list(self.adapters.keys())

    @property
    def num_tokens(self) -> int:
        return self.adapters[self.active_adapter].config.num_tokens

    def _backbone_fields(self) -> dict:
        return {"model_type": self.model_type, "num_layers": self.num_layers, "d_model": self.d_model}

    def add_adapter(self, name: str, config: Optional[IAPTConfig] = None, **config_kwargs) -> IAPTAdapter:
        """Add a freshly initialised adapter (on the backbone's device, float32)."""
        if name in self.adapters:
            raise ValueError(f"adapter_name: an adapter named {name!r} exists already")
        cfg = IAPTConfig(**{**(asdict(config) if config else {}), **config_kwargs, **self._backbone_fields()})
        if self.adapters and cfg.num_tokens != self.num_tokens:
            raise ValueError(f"num_tokens: every adapter on one backbone must use the same number of soft "
                             f"tokens ({self.num_tokens}), got {cfg.num_tokens}")
        device = next(self.base_model.parameters()).device
        self.adapters[name] = IAPTAdapter(cfg, device=device)
        return self.adapters[name]

    def set_active_adapter(self, name: str) -> None:
        self._check_adapter(name)
        self.active_adapter = name

    def _check_adapter(self, name) -> None:
        if name not in self.adapters:
            raise ValueError(f"tenant_ids: unknown adapter {name!r}; known adapters: {self.adapter_names}")

    def save_adapter(self, directory: Union[str, Path], adapter_name: Optional[str] = None) -> None:
        """Write one adapter: ``iapt_config.json`` and ``iapt_generators.safetensors``."""
        from safetensors.torch import save_file

        name = adapter_name or self.active_adapter
        self._check_adapter(name)
        adapter = self.adapters[name]
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(adapter.config.to_dict(), indent=2))
        state = {k: v.detach().contiguous().cpu() for k, v in adapter.generators.state_dict().items()}
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "method": "iapt"})

    save_pretrained = save_adapter

    def load_adapter(self, directory: Union[str, Path], adapter_name: str = "default") -> IAPTAdapter:
        """Load an adapter written by :meth:`save_adapter` (replacing one of the same name).

        Raises ValueError when the adapter was trained for a different backbone."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
        if not config_path.is_file() or not weights_path.is_file():
            raise FileNotFoundError(f"directory: expected {CONFIG_NAME} and {WEIGHTS_NAME} in {directory}")
        cfg = IAPTConfig.from_dict(json.loads(config_path.read_text()))
        mine = self._backbone_fields()
        if cfg.num_layers != mine["num_layers"] or cfg.d_model != mine["d_model"]:
            raise ValueError(
                f"adapter in {directory} was trained for a backbone with {cfg.num_layers} layers and hidden "
                f"size {cfg.d_model} (model_type {cfg.model_type!r}); this model has {mine['num_layers']} "
                f"layers and hidden size {mine['d_model']} (model_type {mine['model_type']!r})")
        if self.adapters and adapter_name not in self.adapters and cfg.num_tokens != self.num_tokens:
            raise ValueError(f"adapter in {directory} uses {cfg.num_tokens} soft tokens; the adapters on this "
                             f"model use {self.num_tokens}")
        device = next(self.base_model.parameters()).device
        adapter = IAPTAdapter(cfg, device=device)
        adapter.generators.load_state_dict(load_file(str(weights_path), device=str(device)))
        self.adapters[adapter_name] = adapter
        return adapter

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: Union[str, Path], adapter_name: str = "default") -> "IAPTModel":
        cfg = IAPTConfig.from_dict(json.loads((Path(directory) / CONFIG_NAME).read_text()))
        wrapper = cls(model, IAPTConfig(num_tokens=cfg.num_tokens, bottleneck=cfg.bottleneck,
                                        rational_degrees=cfg.rational_degrees, rational_form=cfg.rational_form,
                                        rational_init=cfg.rational_init), adapter_name=adapter_name)
        wrapper.load_adapter(directory, adapter_name)
        return wrapper

    # ---- inputs ------------------------------------------------------------------------------
    def _tenant_groups(self, tenant_ids, batch: int, device):
        if tenant_ids is None:
            return [(self.active_adapter, None)]
        if isinstance(tenant_ids, torch.Tensor):
            tenant_ids = tenant_ids.tolist()
        tenant_ids = list(tenant_ids)
        if len(tenant_ids) != batch:
            raise ValueError(f"tenant_ids: expected one tenant per row ({batch}), got {len(tenant_ids)}")
        names = self.adapter_names
        rows: Dict[str, List[int]] = {}
        for row, tenant in enumerate(tenant_ids):
            if isinstance(tenant, int) and not isinstance(tenant, bool):
                if not 0 <= tenant < len(names):
                    raise ValueError(f"tenant_ids: unknown tenant index {tenant}; adapters are {names}")
                tenant = names[tenant]
            self._check_adapter(tenant)
            rows.setdefault(tenant, []).append(row)
        if len(rows) == 1:
            return [(next(iter(rows)), None)]
        return [(name, torch.tensor(r, dtype=torch.long, device=device)) for name, r in rows.items()]

    def _insert_positions(self, input_ids, attention_mask):
        """Where the K reserved positions go: (start (B,), source index (B, L), soft mask (B, L),
        soft index (B, L)) with L = T + K."""
        batch, length = input_ids.shape
        k = self.num_tokens
        real = attention_mask.bool()
        first = real.int().argmax(dim=1)  # first real token (0 for a row without one)
        start = first + 1 if self.kind == "encoder" else first
        start = start.clamp(max=length)
        pos = torch.arange(length + k, device=input_ids.device).unsqueeze(0)
        rel = pos - start.unsqueeze(1)
        soft = (rel >= 0) & (rel < k)
        # a reserved position copies the first real token (its id is never a padding id)
        source = torch.where(rel < 0, pos, torch.where(soft, first.unsqueeze(1), pos - k))
        source = source.clamp(max=max(length - 1, 0))
        return soft, source, rel.clamp(0, k - 1)

    def _prepare(self, input_ids, attention_mask, instruction_mask, labels, token_type_ids, tenant_ids):
        if input_ids is None or input_ids.dim() != 2:
            raise ValueError("input_ids: expected a (batch, tokens) tensor")
        batch, length = input_ids.shape
        if length == 0:
            raise ValueError("input_ids: expected at least one token per row")
        if attention_mask is None:
            attention_mask = torch.ones_like(input_ids)
        if attention_mask.shape != input_ids.shape:
            raise ValueError(f"attention_mask: expected shape {tuple(input_ids.shape)}, got {tuple(attention_mask.shape)}")
        if instruction_mask is None:
            instruction_mask = attention_mask.bool()
        if instruction_mask.shape != input_ids.shape:
            raise ValueError(f"instruction_mask: expected shape {tuple(input_ids.shape)} (that of input_ids), "
                             f"got {tuple(instruction_mask.shape)}")
        groups = self._tenant_groups(tenant_ids, batch, input_ids.device)
        soft, source, soft_index = self._insert_positions(input_ids, attention_mask)

        def spread(t, fill=None):
            t = t.gather(1, source)
            return t if fill is None else torch.where(soft, torch.full_like(t, fill), t)

        out = {
            "input_ids": spread(input_ids),
            "attention_mask": spread(attention_mask, 1),
        }
        if token_type_ids is not None:
            out["token_type_ids"] = spread(token_type_ids)
        if labels is not None:
            out["labels"] = spread(labels, -100) if labels.shape == input_ids.shape else labels
        instruction = spread(instruction_mask.bool() & attention_mask.bool(), False)
        return out, _Batch(soft, soft_index, instruction, groups)

    # ---- the per-layer replacement -----------------------------------------------------------
    def _make_hook(self, layer_index: int):
        def hook(module, args, kwargs):
            batch = self._batch
            if batch is None:
                return None
            hidden = args[0] if args else kwargs["hidden_states"]
            if hidden.shape[1] < batch.length:  # a decoding step: the soft tokens are in the cache
                return None
            if hidden.shape[0] != batch.soft_mask.shape[0]:
                raise RuntimeError("IAPT: the batch size changed inside the model call (beam search or "
                                   "num_return_sequences > 1 are not supported)")
            new_hidden = self._replace(layer_index, hidden, batch)
            if args:
                return (new_hidden,) + tuple(args[1:]), kwargs
            kwargs = dict(kwargs)
            kwargs["hidden_states"] = new_hidden
            return args, kwargs
        return hook

    def _soft_tokens(self, layer_index: int, hidden, batch: _Batch):
        extra = hidden.shape[1] - batch.length
        mask = batch.instruction_mask
        if extra:
            mask = torch.nn.functional.pad(mask, (0, extra), value=False)
        tokens = None
        for name, rows in batch.groups:
            generator = self.adapters[name].generators[layer_index]
            dtype = generator.down.weight.dtype
            if rows is None:
                return generator(hidden.to(dtype), mask)
            part = generator(hidden.index_select(0, rows).to(dtype), mask.index_select(0, rows))
            if tokens is None:
                tokens = part.new_zeros(hidden.shape[0], part.shape[1], part.shape[2])
            tokens = tokens.index_copy(0, rows, part)
        return tokens

    def _replace(self, layer_index: int, hidden, batch: _Batch):
        tokens = self._soft_tokens(layer_index, hidden, batch).to(hidden.dtype)  # (B, K, d)
        soft, index = batch.soft_mask, batch.soft_index
        extra = hidden.shape[1] - batch.length
        if extra:
            soft = torch.nn.functional.pad(soft, (0, extra), value=False)
            index = torch.nn.functional.pad(index, (0, extra), value=0)
        placed = tokens.gather(1, index.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
        return torch.where(soft.unsqueeze(-1), placed, hidden)

    def _strip(self, tensor, soft):
        """Drop the reserved positions from a (B, L, ...) tensor."""
        batch, length = soft.shape
        keep = ~soft
        return tensor[keep].reshape(batch, length - self.num_tokens, *tensor.shape[2:])

    # ---- calls -------------------------------------------------------------------------------
    def forward(self, input_ids=None, attention_mask=None, instruction_mask=None, labels=None,
                token_type_ids=None, tenant_ids=None, **kwargs):
        """The wrapped model's forward with IAPT soft tokens at every layer.

        input_ids, attention_mask, instruction_mask, token_type_ids: (B, T); labels: (B, T)
        for causal LM or (B,) for classification; tenant_ids: B adapter names or indices.
        Per-token outputs (logits) are returned with the reserved positions removed.
        """
        if kwargs.get("inputs_embeds") is not None:
            raise ValueError("inputs_embeds: not supported by IAPTModel; pass input_ids")
        inputs, batch = self._prepare(input_ids, attention_mask, instruction_mask, labels, token_type_ids, tenant_ids)
        self._batch = batch
        try:
            output = self.base_model(**inputs, **kwargs)
        finally:
            self._batch = None
        logits = getattr(output, "logits", None)
        if isinstance(logits, torch.Tensor) and logits.dim() == 3 and logits.shape[1] == batch.length:
            output.logits = self._strip(logits, batch.soft_mask)
        return output

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, instruction_mask=None, tenant_ids=None, **kwargs):
        """``generate()`` of the wrapped causal LM; the soft tokens are computed once at prefill.

        Returns the sequences (B, T + new tokens) without the reserved positions. Greedy or
        sampling with one sequence per row (no beam search)."""
        if self.kind != "decoder":
            raise ValueError("generate: IAPT generation needs a decoder (LLaMA family or GPT-2)")
        if kwargs.get("num_beams", 1) != 1 or kwargs.get("num_return_sequences", 1) != 1:
            raise ValueError("generate: IAPT supports num_beams=1 and num_return_sequences=1")
        inputs, batch = self._prepare(input_ids, attention_mask, instruction_mask, None, None, tenant_ids)
        self._batch = batch
        try:
            sequences = self.base_model.generate(**inputs, **kwargs)
        finally:
            self._batch = None
        if not isinstance(sequences, torch.Tensor):  # return_dict_in_generate
            sequences = sequences.sequences
        extra = sequences.shape[1] - batch.length
        soft = torch.nn.functional.pad(batch.soft_mask, (0, extra), value=False)
        return self._strip(sequences, soft)

    def trainable_parameters(self):
        return [p for p in self.adapters.parameters() if p.requires_grad]

    def extra_repr(self) -> str:
        return (f"kind={self.kind}, layers={self.num_layers} ({self.layer_path}), d_model={self.d_model}, "
                f"adapters={self.adapter_names}, active={self.active_adapter!r}")


def _build_trainer_class():
    import transformers

    class IAPTTrainer(transformers.Trainer):
        """transformers.Trainer whose checkpoints hold the IAPT adapters only, in the
        :meth:`IAPTModel.save_adapter` format: the active adapter in the checkpoint folder, any
        other adapter in a sub-folder named after it. (The plain Trainer would try to write the
        whole backbone, which fails for models with tied weights.)"""

        def _save(self, output_dir=None, state_dict=None):
            output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
            if not self.args.should_save:
                return
            model = self.accelerator.unwrap_model(self.model)
            if not isinstance(model, IAPTModel):
                return super()._save(str(output_dir), state_dict)
            model.save_adapter(output_dir, model.active_adapter)
            for name in model.adapter_names:
                if name != model.active_adapter:
                    model.save_adapter(output_dir / name, name)
            torch.save(self.args, output_dir / transformers.trainer.TRAINING_ARGS_NAME)

    return IAPTTrainer


def __getattr__(name):  # IAPTTrainer is built on first use, so importing this module needs no transformers
    if name == "IAPTTrainer":
        cls = _build_trainer_class()
        globals()["IAPTTrainer"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
