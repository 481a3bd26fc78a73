"""Soft-prompt tuning on Hugging Face transformers models: plain prompt tuning, DePT and EPT.

All three prepend a prompt of soft tokens to the (frozen) input embeddings of a frozen backbone;
only the prompt parts train.

* :class:`PromptTuningModel`: L learnable soft tokens (Lester et al. 2021, as in PEFT).
* :class:`DePTModel`: a short prompt of m tokens plus a low-rank offset A (max_len, r) @ B (r, d)
  added to the input token embeddings by position (DePT, arXiv 2309.05173). B starts at zero.
* :class:`EPTModel`: DePT plus prompt fusion and a gated multi-space projection of the short prompt
  (EPT, arXiv 2405.11464); the exact formulation is in :class:`fastprompt.nn.EPTPrompt`.

Where the soft tokens go (``placement``):

* ``"front"`` (PEFT's placement, so that adapters are interchangeable; the default of decoders and
  encoder-decoder models): before the whole input, at positions 0..L-1 (before any left padding
  too); for T5, before the encoder input (the decoder side is unchanged).
* ``"after_first"`` (the default of BERT-family encoders): after the first token, at positions
  1..L, so ``[CLS]`` stays at position 0, where the pooler and the classification head read it
  (with the prompt in front they read a soft token). Inputs must then start with a real token
  in every row (pad on the right, as BERT tokenizers do). PEFT adapters load (and export) with
  ``"front"``.

The soft tokens' attention-mask entries are 1, their labels -100, their token-type ids 0. Caller
``position_ids`` are extended for the soft tokens and shifted by L after them (the positions the
model would use without explicit position ids).

Outputs with a per-token axis over the prompt + input (``logits``, ``last_hidden_state``,
``hidden_states``, QA ``start_logits`` / ``end_logits``; for encoder-decoder models the encoder's)
come back with the soft-token positions removed, aligned with the caller's ``input_ids``.
:meth:`generate` returns ``input_ids`` followed by the new tokens for decoders (as PEFT does), and
the decoder sequences for encoder-decoder models; the prompt goes through the KV cache at prefill
only. (Decode with :meth:`generate`: :meth:`forward` always places the prompt in the tokens it is
given.)

Decoder sequence classifiers (LLaMA, GPT-2) pool the last position whose attention mask is 1, so
left and right padding both work (with no padding this is what PEFT computes too). The
classification head of ``*ForSequenceClassification`` / ``*ForTokenClassification`` models
trains with the prompt by default (``modules_to_save``).

For DePT and EPT the offset is added to the input by column index of ``input_ids`` (position t of
the padded batch gets ``(A @ B)[t]``), so inputs may have at most ``max_len`` tokens; pad on the
right for these methods.

Checkpoints (:meth:`~fastprompt.methods.base.AdapterModel.save_pretrained`, the format of every
method): ``fastprompt_config.json`` and ``fastprompt_weights.safetensors`` holding
``prompt_embeddings`` (the trained soft tokens, (L, d) or (m, d)), plus ``lowrank_A`` /
``lowrank_B`` (DePT, EPT), the ``projection.*`` tensors (EPT) and the ``modules_to_save``
(``base_model.<module>.<parameter>``). Plain prompt tuning also reads and writes PEFT
prompt-tuning adapters (:meth:`export_peft`, :meth:`PromptTuningModel.from_peft`).
"""
import contextlib
import math
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from fastprompt.methods.base import (AdapterConfig, AdapterModel, config_attr, has_submodule, hidden_size,
                                     positive_int, replace_sequences, takes_logits_to_keep, warn_once)
from fastprompt.methods.prompt_init import embedding_std, random_prompt, vocab_prompt
from fastprompt.nn.prompt import SoftPrompt


INITS = ("random", "vocab", "text", "tensor")
PLACEMENTS = ("auto", "front", "after_first")
# model types whose encoder reads the first token ([CLS]) for sequence-level outputs
ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "albert", "electra", "deberta",
                 "deberta-v2", "mpnet", "ernie", "nomic_bert", "modernbert")
# per-token outputs of the (prompt + input) sequence, returned without the soft positions
PER_TOKEN_OUTPUTS = ("logits", "last_hidden_state", "hidden_states", "start_logits", "end_logits")
ENCODER_PER_TOKEN_OUTPUTS = ("encoder_last_hidden_state", "encoder_hidden_states")


@dataclass
class PromptTuningConfig(AdapterConfig):
    """Plain prompt tuning: ``num_virtual_tokens`` soft tokens before the input.

    Args:
        num_virtual_tokens: L.
        init: how the soft tokens start:
            ``"random"``: normal with the standard deviation of the backbone's word embeddings;
            ``"vocab"``: L rows of the word-embedding matrix sampled uniformly (with replacement);
            ``"text"``: the token embeddings of ``init_text`` (tokenised with the ``tokenizer``
            passed to the model, else ``AutoTokenizer.from_pretrained(tokenizer_name_or_path)``),
            repeated / truncated to L as PEFT does;
            ``"tensor"``: a copy of ``init_tensor`` (L, d).
        init_text: text for ``init="text"``.
        init_tensor: tensor for ``init="tensor"`` (not saved in the config; the weights are).
        seed: seed of the random / vocabulary initialisation (None: torch's global generator).
        tokenizer_name_or_path: tokenizer for ``init="text"`` when none is passed.
        modules_to_save: names of backbone sub-modules that train with the prompt and are saved
            with it (as PEFT's ``modules_to_save``). ``None`` (default): the classification head
            of a ``*ForSequenceClassification`` / ``*ForTokenClassification`` model
            (``classifier`` or ``score``, usually freshly initialised), else nothing, as PEFT does
            for SEQ_CLS / TOKEN_CLS; ``[]``: the whole backbone stays frozen.
        placement: where the soft tokens go. ``"front"``: before the whole input (PEFT's
            placement; PEFT adapters load and export with it); ``"after_first"``: after the
            first token, so an encoder's ``[CLS]`` stays at position 0 where its pooler and
            classifier read it (inputs padded on the right); ``"auto"`` (default):
            ``"after_first"`` for BERT-family encoders, ``"front"`` for everything else.
    """

    num_virtual_tokens: int = 20
    init: str = "random"
    init_text: Optional[str] = None
    init_tensor: Optional[torch.Tensor] = None
    seed: Optional[int] = None
    tokenizer_name_or_path: Optional[str] = None
    modules_to_save: Optional[List[str]] = None
    placement: str = "auto"
    # backbone the prompt belongs to (filled in from the model)
    token_dim: int = 0
    model_type: str = ""
    base_model_name_or_path: Optional[str] = None

    method = "prompt_tuning"
    BACKBONE_FIELDS = ("token_dim", "model_type", "base_model_name_or_path")
    UNSAVED_FIELDS = ("init_tensor",)

    def __post_init__(self):
        self.validate()

    @property
    def prompt_length(self) -> int:
        """Number of soft tokens placed before the input."""
        return self.num_virtual_tokens

    def validate(self) -> None:
        positive_int("num_virtual_tokens", self.num_virtual_tokens)
        if self.init not in INITS:
            raise ValueError(f"init: expected one of {', '.join(map(repr, INITS))}, got {self.init!r}")
        if self.init == "text" and not self.init_text:
            raise ValueError("init_text: init='text' needs a non-empty init_text")
        if self.placement not in PLACEMENTS:
            raise ValueError(f"placement: expected one of {', '.join(map(repr, PLACEMENTS))}, got {self.placement!r}")
        if self.init == "tensor":
            if not isinstance(self.init_tensor, torch.Tensor):
                raise ValueError("init_tensor: init='tensor' needs init_tensor, a (num_virtual_tokens, dim) tensor")
            if self.init_tensor.dim() != 2 or self.init_tensor.shape[0] != self.prompt_length:
                raise ValueError(f"init_tensor: expected shape ({self.prompt_length}, dim), got "
                                 f"{tuple(self.init_tensor.shape)}")

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        if data.get("init") == "tensor":  # the weights file holds the tensor; start from it
            data["init"] = "random"
        # configs written before these fields existed: the prompt sat in front, and only the
        # modules listed were saved
        data.setdefault("placement", "front")
        if data.get("modules_to_save") is None:
            data["modules_to_save"] = []
        return data


def _check_backbone(cfg: PromptTuningConfig, model: nn.Module, source) -> None:
    hidden = config_attr(model, "hidden_size", "n_embd", "d_model")
    model_type = str(getattr(model.config, "model_type", ""))
    if cfg.token_dim and hidden and int(cfg.token_dim) != int(hidden):
        raise ValueError(f"{source}: the prompt was trained for a backbone with hidden size {cfg.token_dim} "
                         f"(model_type {cfg.model_type!r}); this model has hidden size {hidden} "
                         f"(model_type {model_type!r})")
    if cfg.model_type and model_type and cfg.model_type != model_type:
        raise ValueError(f"{source}: the prompt was trained for model_type {cfg.model_type!r}; this model is "
                         f"{model_type!r} (hidden size {hidden})")


# ---- the wrapper -------------------------------------------------------------------------------

class PromptTuningModel(AdapterModel):
    """A frozen transformers model with a trainable soft prompt before its input.

    Args:
        model: a transformers model with input embeddings: BERT family (any head), LLaMA family or
            GPT-2 (causal LM, sequence classification, base model), T5 (conditional generation).
        config: a :class:`PromptTuningConfig` (:class:`DePTConfig` for :class:`DePTModel`,
            :class:`EPTConfig` for :class:`EPTModel`); keyword arguments override its fields.
        tokenizer: tokenizer for ``init="text"``.

    Call it like the wrapped model (``input_ids`` or ``inputs_embeds``, ``attention_mask``,
    ``labels``, ``token_type_ids``, ``position_ids``, ``decoder_input_ids``, ...).
    """

    config_class = PromptTuningConfig
    _build_kwargs = ("tokenizer",)
    # prompt_encoder state names -> checkpoint keys
    _SAVE_KEYS = {"weight": "prompt_embeddings"}
    # default AdamW learning rate of each parameter group of param_groups()
    DEFAULT_LR = {"lr_prompt": 3e-2, "lr_head": 1e-2}

    def __init__(self, model: nn.Module, config: Optional[PromptTuningConfig] = None, adapter_name: str = "default",
                 tokenizer=None, **config_kwargs):
        if adapter_name is not None and not isinstance(adapter_name, str):  # the old signature (model, config, tokenizer)
            warnings.warn(f"{type(self).__name__}(model, config, tokenizer): pass the tokenizer as tokenizer=...; "
                          "the third argument is now adapter_name", DeprecationWarning, stacklevel=2)
            adapter_name, tokenizer = "default", adapter_name
        if not hasattr(model, "get_input_embeddings") or model.get_input_embeddings() is None:
            raise ValueError(f"model: {type(model).__name__} has no input embeddings (get_input_embeddings)")
        super().__init__(model)
        # during a call with tenant_ids naming several tenants: (their names, (B,) index into them)
        self._rows: Optional[Tuple[List[str], torch.Tensor]] = None
        self.prompt_bank = None
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        # a causal LM projects only the caller's positions (and, for the loss, the last soft one)
        name = type(model).__name__
        self._tail_logits = ((name.endswith("ForCausalLM") or name.endswith("LMHeadModel"))
                             and not self.is_encoder_decoder and takes_logits_to_keep(model))
        self.token_dim = hidden_size(model)
        embedding_dim = self.word_embeddings.weight.shape[1]
        if embedding_dim != self.token_dim:
            raise ValueError(f"model: word embeddings of width {embedding_dim} differ from the hidden size "
                             f"{self.token_dim}")
        self.add_adapter(adapter_name, config, tokenizer=tokenizer, **config_kwargs)

    @property
    def prompt_config(self) -> PromptTuningConfig:
        """The config of the active adapter."""
        return self.adapter_config

    @property
    def prompt_encoder(self) -> nn.Module:
        """The active adapter's prompt module (SoftPrompt, DePTPrompt or EPTPrompt)."""
        return self.adapters[self.active_adapter]

    def _make_config(self, config, config_kwargs: dict) -> PromptTuningConfig:
        cfg = super()._make_config(config, config_kwargs)
        if cfg.placement == "auto":
            cfg.placement = "after_first" if self._is_first_token_encoder() else "front"
        if cfg.modules_to_save is None:
            cfg.modules_to_save = self._default_modules_to_save()
        return cfg

    def _build_adapter(self, cfg: PromptTuningConfig, tokenizer=None) -> nn.Module:
        if self.is_encoder_decoder and cfg.placement != "front":
            raise ValueError("placement: encoder-decoder models take the prompt in front of the encoder input "
                             "(placement='front')")
        others = list(self.adapter_configs.values())
        if others and (cfg.modules_to_save or any(c.modules_to_save for c in others)):
            raise ValueError("modules_to_save: a prompt adapter with modules_to_save trains the backbone's own "
                             "modules (e.g. its classifier), so it cannot share the model with other adapters; "
                             "wrap another copy of the backbone")
        if others and cfg.placement != others[0].placement:
            raise ValueError(f"placement: every adapter on one model must use the same placement "
                             f"({others[0].placement!r}), got {cfg.placement!r}")
        encoder = self._build_encoder(cfg)
        self._initialise(cfg, tokenizer, self._soft_prompt(encoder))
        for name in cfg.modules_to_save or []:
            self._saved_module(name).requires_grad_(True)
        return encoder

    def _is_first_token_encoder(self) -> bool:
        """A BERT-family encoder (bidirectional, reads [CLS] at position 0)."""
        cfg = self.base_model.config
        if self.is_encoder_decoder or getattr(cfg, "is_decoder", False):
            return False
        return self.model_type in ENCODER_TYPES

    def _default_modules_to_save(self) -> List[str]:
        name = type(self.base_model).__name__
        if name.endswith("ForSequenceClassification") or name.endswith("ForTokenClassification"):
            return [h for h in ("classifier", "score") if has_submodule(self.base_model, h)][:1]
        return []

    def _saved_module(self, name: str) -> nn.Module:
        try:
            return self.base_model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"modules_to_save: {type(self.base_model).__name__} has no sub-module {name!r}") from None

    def _saved_module_parameters(self, adapter_name: Optional[str] = None) -> Dict[str, nn.Parameter]:
        """``base_model.<module>.<parameter>`` -> parameter, for modules_to_save."""
        out = {}
        for name in self.adapter_configs[adapter_name or self.active_adapter].modules_to_save or []:
            for pname, p in self._saved_module(name).named_parameters():
                out[f"base_model.{name}.{pname}"] = p
        return out

    # ---- construction ------------------------------------------------------------------------
    @property
    def word_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    @property
    def num_virtual_tokens(self) -> int:
        """Soft tokens placed before the input."""
        return self.prompt_config.prompt_length

    def _backbone_fields(self) -> dict:
        name = getattr(self.base_model.config, "name_or_path", None) or getattr(self.base_model, "name_or_path", None)
        return {"token_dim": self.token_dim, "model_type": self.model_type,
                "base_model_name_or_path": str(name) if name else None}

    def _device(self):
        return self.word_embeddings.weight.device

    def _build_encoder(self, cfg: PromptTuningConfig) -> nn.Module:
        return SoftPrompt(cfg.num_virtual_tokens, self.token_dim, device=self._device(), dtype=torch.float32)

    def _soft_prompt(self, encoder: Optional[nn.Module] = None) -> SoftPrompt:
        """The SoftPrompt module (of ``encoder``, default the active one) whose weight is saved as
        ``prompt_embeddings``."""
        return self.prompt_encoder if encoder is None else encoder

    @torch.no_grad()
    def _initialise(self, cfg: PromptTuningConfig, tokenizer, soft_prompt: SoftPrompt) -> None:
        weight = soft_prompt.weight
        length, dim = weight.shape
        table = self.word_embeddings.weight
        if cfg.init == "random":
            weight.copy_(random_prompt(length, dim, cfg.seed, embedding_std(table)))
        elif cfg.init == "vocab":
            weight.copy_(vocab_prompt(table, length, cfg.seed))
        elif cfg.init == "text":
            ids = self._text_ids(cfg, tokenizer)
            ids = (ids * math.ceil(length / len(ids)))[:length]
            weight.copy_(table[torch.tensor(ids, device=table.device)].float())
        else:
            tensor = cfg.init_tensor
            if tuple(tensor.shape) != (length, dim):
                raise ValueError(f"init_tensor: expected shape ({length}, {dim}) (soft tokens, hidden size of the "
                                 f"backbone), got {tuple(tensor.shape)}")
            weight.copy_(tensor.detach().to(weight.device, weight.dtype))

    def _text_ids(self, cfg: PromptTuningConfig, tokenizer) -> List[int]:
        if tokenizer is None:
            if not cfg.tokenizer_name_or_path:
                raise ValueError("tokenizer: init='text' needs a tokenizer (pass tokenizer=... to the model or set "
                                 "tokenizer_name_or_path in the config)")
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(cfg.tokenizer_name_or_path)
        ids = tokenizer(cfg.init_text)["input_ids"]
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        if ids and isinstance(ids[0], list):
            ids = ids[0]
        if not ids:
            raise ValueError(f"init_text: {cfg.init_text!r} tokenises to no tokens")
        vocab = self.word_embeddings.weight.shape[0]
        bad = [i for i in ids if not 0 <= i < vocab]
        if bad:
            raise ValueError(f"tokenizer: token ids {bad[:5]} of init_text are outside the backbone's vocabulary "
                             f"of {vocab}")
        return [int(i) for i in ids]

    # ---- the prompt and the input embeddings -------------------------------------------------
    def prompt(self) -> torch.Tensor:
        """The soft tokens placed before the input, (L, d), float32."""
        return self.prompt_encoder()

    def use_prompt_bank(self, bank) -> None:
        """Serve the tasks and registered mixes of a :class:`fastprompt.vectors.PromptBank` too:
        ``tenant_ids`` may then name them (a bank's prompt is placed like an adapter's; plain
        prompt tuning only). ``None`` detaches the bank."""
        if bank is not None:
            from fastprompt.vectors.bank import PromptBank

            if not isinstance(bank, PromptBank):
                raise ValueError(f"bank: expected a fastprompt.vectors.PromptBank, got {type(bank).__name__}")
            if type(self) is not PromptTuningModel:
                raise ValueError(f"bank: a prompt bank holds plain prompts; {type(self).__name__} adds an input "
                                 "offset that a bank does not have (use PromptTuningModel)")
            if bank.prompt_shape[1] != self.token_dim:
                raise ValueError(f"bank: expected prompts of width {self.token_dim} (the backbone's hidden size), "
                                 f"got prompt shape {bank.prompt_shape}")
            clash = [n for n in bank.names if n in self.adapters]
            if clash:
                raise ValueError(f"bank: names {clash} are adapters of this model too; rename the bank's tasks or mixes")
        self.prompt_bank = bank

    def _is_tenant(self, name) -> bool:
        return name in self.adapters or (self.prompt_bank is not None and name in self.prompt_bank.names)

    @contextlib.contextmanager
    def _serving(self, tenant_ids, batch: int, device):
        """Within the block, row b of a call uses the tenant ``tenant_ids`` names for it (an
        adapter, or a prompt bank's task or mix; see :meth:`tenant_names`); None keeps the
        active adapter for every row."""
        if tenant_ids is None:
            yield
            return
        row_names = self.tenant_names(tenant_ids, batch)
        names = list(dict.fromkeys(row_names))
        adapters = [n for n in names if n in self.adapters]
        sizes = {n: self.adapter_configs[n].num_virtual_tokens for n in adapters}
        sizes.update({n: self.prompt_bank.prompt_shape[0] for n in names if n not in self.adapters})
        first = names[0]
        for name in names[1:]:
            if sizes[name] != sizes[first]:
                raise ValueError(f"tenant_ids: {first!r} and {name!r} have different num_virtual_tokens "
                                 f"({sizes[first]} and {sizes[name]}) and cannot share a batch; run them separately")
            if name in self.adapters and first in self.adapters:
                a, b = self.adapter_configs[first].placement, self.adapter_configs[name].placement
                if a != b:
                    raise ValueError(f"tenant_ids: adapters {first!r} and {name!r} have different placement "
                                     f"({a!r} and {b!r}) and cannot share a batch; run them separately")
        active = self.active_adapter
        if adapters:
            self.active_adapter = adapters[0]
        if len(names) > 1 or not adapters:
            position = {name: i for i, name in enumerate(names)}
            self._rows = (names, torch.tensor([position[n] for n in row_names], dtype=torch.long, device=device))
        try:
            yield
        finally:
            self.active_adapter, self._rows = active, None

    def _per_row(self, make) -> torch.Tensor:
        """``make(adapter module)`` of every row's adapter, stacked by row (B, ...): one tensor per
        adapter used, gathered by the row index (during a call with several tenants)."""
        names, index = self._rows
        return torch.stack([make(self.adapters[name]) for name in names]).index_select(0, index)

    def _batch_prompt(self, batch: int) -> torch.Tensor:
        """The soft tokens of every row, (B, L, d): the adapters' prompts stacked, a prompt bank's
        in one combine call, gathered by row."""
        if self._rows is None:
            return self.prompt().unsqueeze(0).expand(batch, -1, -1)
        names, index = self._rows
        adapters = [n for n in names if n in self.adapters]
        if len(adapters) == len(names):
            return self._per_row(lambda encoder: encoder())
        parts = [torch.stack([self.adapters[n]() for n in adapters])] if adapters else []
        banked = [n for n in names if n not in self.adapters]
        parts.append(self.prompt_bank(banked).to(device=index.device, dtype=torch.float32))
        order = {n: i for i, n in enumerate(adapters + banked)}  # rows of the concatenation
        remap = torch.tensor([order[n] for n in names], dtype=torch.long, device=index.device)
        return torch.cat(parts).index_select(0, remap.index_select(0, index))

    def embed_inputs(self, input_ids=None, inputs_embeds=None) -> torch.Tensor:
        """Input embeddings of the caller's tokens (B, T, d) (with the method's offset, if any)."""
        if inputs_embeds is None:
            if input_ids is None or input_ids.dim() != 2:
                raise ValueError("input_ids: expected a (batch, tokens) tensor (or pass inputs_embeds)")
            inputs_embeds = self.word_embeddings(input_ids)
        elif inputs_embeds.dim() != 3 or inputs_embeds.shape[-1] != self.token_dim:
            raise ValueError(f"inputs_embeds: expected shape (batch, tokens, {self.token_dim}), got "
                             f"{tuple(inputs_embeds.shape)}")
        return inputs_embeds

    @property
    def prompt_start(self) -> int:
        """Column of the first soft token in the sequence the backbone sees (0, or 1 with
        placement "after_first")."""
        return 1 if self.prompt_config.placement == "after_first" else 0

    def _insert(self, tensor: torch.Tensor, block: torch.Tensor) -> torch.Tensor:
        """``block`` (B, L, ...) inserted into ``tensor`` (B, T, ...) at the soft-token columns."""
        start = self.prompt_start
        if start == 0:
            return torch.cat([block, tensor], dim=1)
        return torch.cat([tensor[:, :start], block, tensor[:, start:]], dim=1)

    def _strip(self, tensor: torch.Tensor, num: int) -> torch.Tensor:
        """``tensor`` (B, L + T, ...) without the soft-token columns, as a new tensor: a view would
        keep the soft positions' values alive with it, and FSDP2 warns about (and cannot follow
        in-place changes to) a view returned by the module it wraps."""
        start = self.prompt_start
        if start == 0:
            return tensor[:, num:].clone(memory_format=torch.contiguous_format)
        return torch.cat([tensor[:, :start], tensor[:, start + num:]], dim=1)

    def _prepend(self, input_ids, inputs_embeds, attention_mask):
        embeds = self.embed_inputs(input_ids, inputs_embeds)
        batch, length = embeds.shape[:2]
        prompt = self._batch_prompt(batch).to(embeds.dtype)
        num = prompt.shape[1]
        if attention_mask is not None and attention_mask.shape != (batch, length):
            raise ValueError(f"attention_mask: expected shape {(batch, length)} (that of the input), got "
                             f"{tuple(attention_mask.shape)}")
        if self.prompt_start:
            if length < 1:
                raise ValueError("input_ids: placement 'after_first' needs at least one token ([CLS]) per row")
            if attention_mask is not None and not bool(attention_mask[:, 0].all()):
                raise ValueError("attention_mask: the soft tokens go after the first token ([CLS]), so the first "
                                 "column must be a real token in every row: pad on the right (BERT tokenizers do), "
                                 "or use placement='front'")
        embeds = self._insert(embeds, prompt)
        if attention_mask is not None:
            attention_mask = self._insert(attention_mask, attention_mask.new_ones(batch, num))
        return embeds, attention_mask, num

    def _check_labels(self, labels: torch.Tensor, batch: int, length: int) -> None:
        if not isinstance(labels, torch.Tensor):
            raise ValueError(f"labels: expected a tensor, got {type(labels).__name__}")
        name = type(self.base_model).__name__
        token_level = (name.endswith("ForCausalLM") or name.endswith("LMHeadModel") or name.endswith("ForMaskedLM")
                       or name.endswith("ForTokenClassification"))
        if token_level:
            if tuple(labels.shape) != (batch, length):
                raise ValueError(f"labels: expected shape {(batch, length)} (one label per input token, -100 where "
                                 f"there is no loss; the model shifts them itself), got {tuple(labels.shape)}")
        elif name.endswith("ForSequenceClassification"):
            num_labels = int(getattr(self.base_model.config, "num_labels", 0) or 0)
            if labels.dim() == 0 or labels.shape[0] != batch or labels.dim() > 2 or (
                    labels.dim() == 2 and labels.shape[1] not in (1, num_labels)):
                raise ValueError(f"labels: expected shape ({batch},) (a class index per row), or ({batch}, "
                                 f"{num_labels}) for multi-label targets, got {tuple(labels.shape)}")

    # ---- calls -------------------------------------------------------------------------------
    def _batch_size_and_device(self, input_ids, inputs_embeds):
        """(batch size, device) of a call's input."""
        source = input_ids if isinstance(input_ids, torch.Tensor) else inputs_embeds
        if not isinstance(source, torch.Tensor) or source.dim() < 2:
            raise ValueError("input_ids: expected a (batch, tokens) tensor (or pass inputs_embeds)")
        return source.shape[0], source.device

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, token_type_ids=None,
                position_ids=None, tenant_ids=None, **kwargs):
        """The wrapped model's forward with the soft prompt placed in the input.

        tenant_ids: the adapter of each row (B adapter names or indices into
        :attr:`adapter_names`, or one name for all); None: the active adapter. Adapters that share
        a batch need the same number of soft tokens and placement; a batch of several tenants
        equals each tenant's rows run alone.
        labels: (B, T) token labels (causal LM, masked LM, token classification; -100 is inserted
        for the soft tokens), or (B,) class labels, or the decoder labels of an encoder-decoder
        model (unchanged). Per-token outputs over prompt + input (``logits``,
        ``last_hidden_state``, ``hidden_states``; the encoder's for encoder-decoder models) come
        back with the soft-token positions removed; ``attentions`` and the KV cache keep them.
        ``instruction_mask`` (an IAPT input) is accepted and ignored, with a warning the first
        time, so one collator serves every method.
        """
        if kwargs.pop("instruction_mask", None) is not None:
            warn_once(self, "instruction_mask", f"instruction_mask: {type(self).__name__} does not use an "
                       "instruction mask (the soft prompt is the same for every input); it is ignored", stacklevel=3)
        with self._serving(tenant_ids, *self._batch_size_and_device(input_ids, inputs_embeds)):
            return self._forward(input_ids, attention_mask, inputs_embeds, labels, token_type_ids, position_ids,
                                 kwargs)

    def _forward(self, input_ids, attention_mask, inputs_embeds, labels, token_type_ids, position_ids, kwargs):
        self._check_dtype_device()
        embeds, attention_mask, num = self._prepend(input_ids, inputs_embeds, attention_mask)
        batch, total = embeds.shape[:2]
        length = total - num
        start = self.prompt_start
        inputs: Dict[str, Any] = {"inputs_embeds": embeds}
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        if token_type_ids is not None:
            if self.is_encoder_decoder:
                raise ValueError("token_type_ids: not used by encoder-decoder models")
            if tuple(token_type_ids.shape) != (batch, length):
                raise ValueError(f"token_type_ids: expected shape {(batch, length)} (that of the input), got "
                                 f"{tuple(token_type_ids.shape)}")
            inputs["token_type_ids"] = self._insert(token_type_ids, token_type_ids.new_zeros(batch, num))
        if position_ids is not None:
            if self.is_encoder_decoder:
                raise ValueError("position_ids: not used by encoder-decoder models")
            position_ids = position_ids.expand(batch, -1) if position_ids.shape[0] == 1 else position_ids
            if start == 0:
                prefix = torch.arange(num, device=position_ids.device, dtype=position_ids.dtype).expand(batch, -1)
                inputs["position_ids"] = torch.cat([prefix, position_ids + num], dim=1)
            else:
                first = position_ids[:, :1]
                soft = first + 1 + torch.arange(num, device=position_ids.device, dtype=position_ids.dtype)
                inputs["position_ids"] = torch.cat([first, soft, position_ids[:, 1:] + num], dim=1)
        # front placement on a causal LM: logits of the last `keep` positions only; with labels the
        # last soft position too (it predicts the caller's first token), dropped from the output
        keep = 0
        if self._tail_logits and start == 0 and kwargs.get("logits_to_keep") is None:
            keep = length + (1 if labels is not None else 0)
            kwargs["logits_to_keep"] = keep
        if labels is not None:
            if not self.is_encoder_decoder:
                self._check_labels(labels, batch, length)
                if labels.dim() == 2 and labels.shape == (batch, length) and not self._is_sequence_classifier():
                    pad = (batch, keep - length) if keep else (batch, num)
                    labels = self._insert(labels, labels.new_full(pad, -100))
            inputs["labels"] = labels
        if self._is_decoder_classifier():
            output = self._decoder_classifier_forward(inputs, kwargs)
        else:
            output = self.base_model(**inputs, **kwargs)
        keys = ENCODER_PER_TOKEN_OUTPUTS if self.is_encoder_decoder else PER_TOKEN_OUTPUTS
        for key in keys:
            value = getattr(output, key, None)
            if isinstance(value, torch.Tensor) and value.dim() >= 2 and value.shape[1] == total:
                setattr(output, key, self._strip(value, num))
            elif isinstance(value, tuple) and value and all(
                    isinstance(v, torch.Tensor) and v.dim() >= 2 and v.shape[1] == total for v in value):
                setattr(output, key, tuple(self._strip(v, num) for v in value))
        logits = getattr(output, "logits", None)
        if keep > length and isinstance(logits, torch.Tensor) and logits.shape[1] == keep and num != 1:
            output.logits = self._strip(logits, 1)
        return output

    def _is_sequence_classifier(self) -> bool:
        return type(self.base_model).__name__.endswith("ForSequenceClassification")

    def _is_decoder_classifier(self) -> bool:
        model = self.base_model
        return (not self.is_encoder_decoder and type(model).__name__.endswith("ForSequenceClassification")
                and isinstance(getattr(model, "score", None), nn.Module)
                and isinstance(getattr(model, getattr(model, "base_model_prefix", ""), None), nn.Module))

    def _decoder_classifier_forward(self, inputs, kwargs):
        """Decoder sequence classifiers (LLaMA, GPT-2, ...) pool their last token. Fed
        ``inputs_embeds``, transformers pools the last position whatever the padding; here the
        last position whose attention mask is 1 is pooled, as transformers does from input_ids,
        so right padding works too."""
        from transformers.modeling_outputs import SequenceClassifierOutputWithPast

        model = self.base_model
        labels = inputs.pop("labels", None)
        mask = inputs.get("attention_mask")
        hidden = getattr(model, model.base_model_prefix)(**inputs, **kwargs)
        logits = model.score(hidden[0])
        batch, total = logits.shape[:2]
        if mask is None:
            last = torch.full((batch,), total - 1, device=logits.device)
        else:
            positions = torch.arange(total, device=logits.device)
            last = (positions * (mask.to(logits.device) != 0)).argmax(-1)
        pooled = logits[torch.arange(batch, device=logits.device), last]
        loss = None
        if labels is not None:
            loss = model.loss_function(logits=logits, labels=labels, pooled_logits=pooled, config=model.config)
        return SequenceClassifierOutputWithPast(loss=loss, logits=pooled,
                                                past_key_values=getattr(hidden, "past_key_values", None),
                                                hidden_states=getattr(hidden, "hidden_states", None),
                                                attentions=getattr(hidden, "attentions", None))

    @torch.no_grad()
    def generate(self, input_ids=None, attention_mask=None, tenant_ids=None, **kwargs):
        """``generate()`` of the wrapped model with the soft prompt before the input.

        ``tenant_ids`` as in :meth:`forward`: each row generates with its own adapter.
        Decoders return ``input_ids`` followed by the new tokens (B, T + new), the same as PEFT;
        encoder-decoder models return the decoder sequences. Any decoding strategy of
        ``generate()`` works (the prompt is part of ``inputs_embeds`` at prefill and then lives in
        the KV cache). ``max_length`` counts the caller's tokens, not the soft tokens. Batches of
        prompts of different lengths must be padded on the left for decoders (a warning says so
        when a row ends in padding). ``instruction_mask`` is ignored.
        """
        if not self.base_model.can_generate():
            raise ValueError(f"generate: {type(self.base_model).__name__} cannot generate (use a causal LM or "
                             "an encoder-decoder model)")
        if input_ids is None:
            raise ValueError("input_ids: generate() needs input_ids")
        kwargs.pop("instruction_mask", None)
        with self._serving(tenant_ids, *self._batch_size_and_device(input_ids, None)):
            return self._generate(input_ids, attention_mask, kwargs)

    def _generate(self, input_ids, attention_mask, kwargs):
        if (not self.is_encoder_decoder and attention_mask is not None and attention_mask.dim() == 2
                and attention_mask.shape[1] > 0 and not bool(attention_mask[:, -1].all())):
            warn_once(self, "right-padding", "attention_mask: some prompts end in padding (right-padded); a decoder "
                       "then continues after the padding and its answers are wrong. Pad prompts on the left for "
                       "generate() (tokenizer.padding_side = 'left')", stacklevel=4)
        embeds, attention_mask, num = self._prepend(input_ids, kwargs.pop("inputs_embeds", None), attention_mask)
        if attention_mask is None:
            attention_mask = torch.ones(embeds.shape[:2], dtype=torch.long, device=embeds.device)
        if not self.is_encoder_decoder and kwargs.get("max_length") is not None and "max_new_tokens" not in kwargs:
            kwargs["max_new_tokens"] = max(0, int(kwargs.pop("max_length")) - input_ids.shape[1])
        hook = None
        if not self.is_encoder_decoder:
            hook = self._decode_offset_hook(input_ids.shape[1])
        try:
            output = self.base_model.generate(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)
        finally:
            if hook is not None:
                hook.remove()
        if self.is_encoder_decoder:
            return output
        sequences = output if isinstance(output, torch.Tensor) else output.sequences
        # generate() of a decoder fed inputs_embeds only returns the new tokens; put the caller's
        # tokens in front
        return replace_sequences(output, torch.cat([input_ids.to(sequences.device), sequences], dim=1))

    def _decode_offset_hook(self, length: int):
        """During generate(): a hook on the input embeddings for the decoding steps (None when the
        method has no input offset)."""
        return None

    # ---- training helpers --------------------------------------------------------------------
    def _group_parameters(self) -> Dict[str, List[nn.Parameter]]:
        """Trainable parameters by learning-rate group name (``lr_prompt``, ``lr_head``, ...)."""
        return {"lr_prompt": [p for p in self.prompt_encoder.parameters() if p.requires_grad],
                "lr_head": [p for p in self._saved_module_parameters().values() if p.requires_grad]}

    def param_groups(self, lr_prompt: Optional[float] = None, lr_lowrank: Optional[float] = None,
                     lr_head: Optional[float] = None, lr_projection: Optional[float] = None, scale: float = 1.0,
                     **extra) -> List[dict]:
        """Optimizer parameter groups with the method's default learning rates (for AdamW).

        Groups: ``lr_prompt`` (the soft tokens), ``lr_lowrank`` (DePT / EPT: the pair A, B),
        ``lr_projection`` (EPT: the multi-space projection and its gate), ``lr_head`` (the
        modules_to_save, e.g. a classification head). A learning rate left as None takes the
        default of the class's ``DEFAULT_LR`` (prompt tuning: prompt 3e-2, head 1e-2;
        DePT: prompt 3e-2, low-rank 1e-3; EPT: the same plus projection 1e-3); ``scale``
        multiplies every group's rate (a learning-rate sweep around the defaults). Any other
        keyword (``weight_decay``, ``betas``, ...) goes into every group. Giving a learning rate
        for a group the method does not have raises ValueError. Empty groups are left out.
        """
        given = {"lr_prompt": lr_prompt, "lr_lowrank": lr_lowrank, "lr_head": lr_head, "lr_projection": lr_projection}
        defaults = type(self).DEFAULT_LR
        for name, value in given.items():
            if value is not None and name not in defaults:
                raise ValueError(f"{name}: {type(self).__name__} ({self.prompt_config.method}) has no such parameter "
                                 f"group; its groups are {', '.join(sorted(defaults))}")
            if value is not None and (not isinstance(value, (int, float)) or value < 0):
                raise ValueError(f"{name}: expected a non-negative learning rate, got {value!r}")
        groups = []
        for name, params in self._group_parameters().items():
            if params:
                lr = given[name] if given[name] is not None else defaults[name]
                groups.append({"params": params, "lr": float(lr) * scale, "name": name[3:], **extra})
        return groups

    def default_learning_rates(self) -> Dict[str, float]:
        """The method's default learning rate of every parameter group (see :meth:`param_groups`)."""
        return dict(type(self).DEFAULT_LR)

    def parameter_report(self) -> Dict[str, int]:
        """Trainable parameters per part, the total, and the backbone's (frozen) parameters."""
        report = {name.replace(".", "_"): p.numel() for name, p in self.prompt_encoder.named_parameters()
                  if p.requires_grad}
        for key, p in self._saved_module_parameters().items():
            report[key.replace(".", "_")] = p.numel()
        report["trainable"] = self.num_trainable_parameters()
        report["backbone"] = sum(p.numel() for p in self.base_model.parameters())
        report["plain_prompt_equivalent_tokens"] = report["trainable"] / self.token_dim
        return report

    # ---- save and load -----------------------------------------------------------------------
    def _adapter_tensors(self, name: str) -> Dict[str, torch.Tensor]:
        state = {self._SAVE_KEYS.get(key, key): t for key, t in self.adapters[name].state_dict(keep_vars=True).items()}
        state.update(self._saved_module_parameters(name))
        return state

    @classmethod
    def _check_backbone(cls, cfg: PromptTuningConfig, model: nn.Module, source) -> None:
        _check_backbone(cfg, model, source)

    @staticmethod
    def _config_for_loading(cfg: PromptTuningConfig) -> dict:
        values = cfg.hyper_parameters()
        values.update(init="random", init_tensor=None)  # the checkpoint holds the trained values
        return values

    def _after_load(self, name: str, cfg: PromptTuningConfig) -> None:
        mine = self.adapter_configs[name]
        mine.init, mine.init_text, mine.seed = cfg.init, cfg.init_text, cfg.seed

    def _check_same_config(self, mine: PromptTuningConfig, saved: PromptTuningConfig, source) -> None:
        if saved.placement != mine.placement:
            raise ValueError(f"{source}: the prompt was trained with placement {saved.placement!r}; this model uses "
                             f"{mine.placement!r}")

    # ---- PEFT interop ------------------------------------------------------------------------
    def export_peft(self, directory: Union[str, Path]) -> None:
        """Write a PEFT prompt-tuning adapter (see :func:`fastprompt.methods.peft_interop.export_peft`)."""
        from fastprompt.methods.peft_interop import export_peft

        export_peft(self, directory)

    @classmethod
    def from_peft(cls, model: nn.Module, directory: Union[str, Path]) -> "PromptTuningModel":
        """Load a PEFT prompt-tuning adapter (see :func:`fastprompt.methods.peft_interop.from_peft`)."""
        if cls is not PromptTuningModel:
            raise ValueError(f"from_peft: PEFT prompt-tuning adapters load as PromptTuningModel, not {cls.__name__}")
        from fastprompt.methods.peft_interop import from_peft

        return from_peft(model, directory)

    def extra_repr(self) -> str:
        return (f"method={self.prompt_config.method}, num_virtual_tokens={self.num_virtual_tokens}, "
                f"token_dim={self.token_dim}, model_type={self.model_type!r}")
