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

Checkpoints (:meth:`PromptTuningModel.save_pretrained`): ``prompt_config.json`` and
``prompt_weights.safetensors`` holding ``prompt_embeddings`` (the trained soft tokens, (L, d) or
(m, d)), plus ``lowrank_A`` / ``lowrank_B`` (DePT, EPT) and the ``projection.*`` tensors (EPT).
Plain prompt tuning also reads and writes PEFT prompt-tuning adapters (:meth:`export_peft`,
:meth:`PromptTuningModel.from_peft`).
"""
import json
import math
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import torch
from torch import nn

from fastprompt.methods._sharded import gather_for_save
from fastprompt.nn.prompt import DePTPrompt, EPTPrompt, SoftPrompt

CONFIG_NAME = "prompt_config.json"
WEIGHTS_NAME = "prompt_weights.safetensors"
PEFT_CONFIG_NAME = "adapter_config.json"
PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_WEIGHTS_NAME_BIN = "adapter_model.bin"

INITS = ("random", "vocab", "text", "tensor")
PLACEMENTS = ("auto", "front", "after_first")
# model types whose encoder reads the first token ([CLS]) for sequence-level outputs
ENCODER_TYPES = ("bert", "roberta", "xlm-roberta", "camembert", "distilbert", "albert", "electra", "deberta",
                 "deberta-v2", "mpnet", "ernie", "nomic_bert", "modernbert")
# per-token outputs of the (prompt + input) sequence, returned without the soft positions
PER_TOKEN_OUTPUTS = ("logits", "last_hidden_state", "hidden_states", "start_logits", "end_logits")
ENCODER_PER_TOKEN_OUTPUTS = ("encoder_last_hidden_state", "encoder_hidden_states")
# default optimizer learning rates of param_groups() (AdamW), per method and group
DEFAULT_LR = {
    "prompt_tuning": {"lr_prompt": 3e-2, "lr_head": 1e-3},
    "dept": {"lr_prompt": 3e-2, "lr_lowrank": 1e-3, "lr_head": 1e-3},
    "ept": {"lr_prompt": 3e-2, "lr_lowrank": 1e-3, "lr_projection": 1e-3, "lr_head": 1e-3},
}
# backbone fields a saved config carries (filled in from the model)
BACKBONE_FIELDS = ("token_dim", "model_type", "base_model_name_or_path")


@dataclass
class PromptTuningConfig:
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

    def __post_init__(self):
        self.validate()

    @property
    def prompt_length(self) -> int:
        """Number of soft tokens placed before the input."""
        return self.num_virtual_tokens

    def validate(self) -> None:
        _positive("num_virtual_tokens", self.num_virtual_tokens)
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

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "init_tensor"}
        return {"method": self.method, **data}

    @classmethod
    def from_dict(cls, data: dict) -> "PromptTuningConfig":
        data = dict(data)
        method = data.pop("method", cls.method)
        if method != cls.method:
            raise ValueError(f"config: expected a {cls.method!r} config, got method {method!r}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"config: unknown {cls.method} config fields {unknown}")
        if data.get("init") == "tensor":  # the weights file holds the tensor; start from it
            data["init"] = "random"
        # configs written before these fields existed: the prompt sat in front, and only the
        # modules listed were saved
        data.setdefault("placement", "front")
        if data.get("modules_to_save") is None:
            data["modules_to_save"] = []
        return cls(**data)


@dataclass
class DePTConfig(PromptTuningConfig):
    """DePT: a short prompt of ``num_virtual_tokens`` (m) tokens and a low-rank offset
    A (max_len, rank) @ B (rank, d) of the input embeddings. ``init*`` apply to the short prompt.
    :func:`match_prompt_budget` picks (m, rank) with the parameter count of a plain prompt."""

    rank: int = 8
    max_len: int = 256

    method = "dept"

    def validate(self) -> None:
        super().validate()
        _positive("rank", self.rank)
        _positive("max_len", self.max_len)


@dataclass
class EPTConfig(DePTConfig):
    """EPT: DePT plus prompt fusion and a gated projection of the short prompt into
    ``num_spaces`` subspaces (see :class:`fastprompt.nn.EPTPrompt`).

    Args (besides DePT's):
        num_spaces: N.
        gate: ``"per_row"`` (every soft token computes its own mix of the spaces with a linear
            gating network) or ``"shared"`` (one learned mix for the whole prompt).
        projection_init_scale: s, the projection weights start as N(0, s^2 / d) (the projection
            is a residual branch, so a small s starts EPT close to DePT with fusion).
    """

    num_spaces: int = 4
    gate: str = "per_row"
    projection_init_scale: float = 0.1

    method = "ept"

    def validate(self) -> None:
        super().validate()
        _positive("num_spaces", self.num_spaces)
        if self.gate not in ("per_row", "shared"):
            raise ValueError(f"gate: expected 'per_row' or 'shared', got {self.gate!r}")


CONFIG_CLASSES = {c.method: c for c in (PromptTuningConfig, DePTConfig, EPTConfig)}


def _positive(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


# ---- parameter budget --------------------------------------------------------------------------

def count_parameters(module: nn.Module, trainable_only: bool = True) -> int:
    """Number of (trainable) parameters of a module or wrapped model."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def dept_parameter_count(num_tokens: int, rank: int, dim: int, max_len: int) -> int:
    """Trainable parameters of DePT: m*d + r*(max_len + d)."""
    return num_tokens * dim + rank * (max_len + dim)


def match_prompt_budget(num_virtual_tokens: int, dim: int, max_len: int, num_tokens: Optional[int] = None,
                        rank: Optional[int] = None) -> Tuple[int, int]:
    """(m, r) for DePT / EPT with at most the parameters of a plain prompt of L tokens.

    DePT's rule: ``m*d + r*(max_len + d) <= L*d``. Give ``num_tokens`` (m) to get the largest rank
    that fits, or ``rank`` to get the largest m; with neither, m = round(0.6 L) (DePT's main
    setting, e.g. L=100 -> m=60, r=30 for d=768, max_len=256). Raises ValueError when nothing fits.
    """
    for name, value in (("num_virtual_tokens", num_virtual_tokens), ("dim", dim), ("max_len", max_len)):
        _positive(name, value)
    budget = num_virtual_tokens * dim
    if num_tokens is not None and rank is not None:
        raise ValueError("num_tokens, rank: give at most one of them; the other is chosen to fit the budget")
    if rank is not None:
        _positive("rank", rank)
        m = (budget - rank * (max_len + dim)) // dim
        if m < 1:
            raise ValueError(f"rank: a rank of {rank} leaves no room for a short prompt within the budget of "
                             f"{num_virtual_tokens} soft tokens (d={dim}, max_len={max_len})")
        return int(m), rank
    if num_tokens is None:
        num_tokens = max(1, int(round(0.6 * num_virtual_tokens)))
    _positive("num_tokens", num_tokens)
    r = (budget - num_tokens * dim) // (max_len + dim)
    if r < 1:
        raise ValueError(f"num_tokens: a short prompt of {num_tokens} tokens leaves no room for a rank >= 1 "
                         f"within the budget of {num_virtual_tokens} soft tokens (d={dim}, max_len={max_len})")
    return num_tokens, int(r)


def _warn_once(owner, key: str, message: str, stacklevel: int = 3) -> None:
    """``message`` as a UserWarning, once per wrapper object and ``key``."""
    seen = owner.__dict__.setdefault("_warned", set())
    if key not in seen:
        seen.add(key)
        warnings.warn(message, UserWarning, stacklevel=stacklevel)


def _checkpoint_files(directory: Path) -> Tuple[Path, Path]:
    """(config, weights) paths of a save_pretrained folder; FileNotFoundError naming the folder
    and the files expected in it otherwise."""
    expected = f"{CONFIG_NAME} and {WEIGHTS_NAME}"
    if not directory.is_dir():
        raise FileNotFoundError(f"directory: {directory} does not exist (expected a folder holding {expected}, "
                                "written by save_pretrained)")
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    missing = [p.name for p in (config_path, weights_path) if not p.is_file()]
    if missing:
        hint = ""
        if (directory / PEFT_CONFIG_NAME).is_file():
            hint = f"; it holds a PEFT adapter ({PEFT_CONFIG_NAME}): load it with PromptTuningModel.from_peft"
        raise FileNotFoundError(f"directory: {directory} has no {' and no '.join(missing)} (expected {expected}, "
                                f"written by save_pretrained){hint}")
    return config_path, weights_path


def _has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def _check_backbone(cfg: PromptTuningConfig, model: nn.Module, source) -> None:
    hidden = _config_attr(model, "hidden_size", "n_embd", "d_model")
    model_type = str(getattr(model.config, "model_type", ""))
    if cfg.token_dim and hidden and int(cfg.token_dim) != int(hidden):
        raise ValueError(f"{source}: the prompt was trained for a backbone with hidden size {cfg.token_dim} "
                         f"(model_type {cfg.model_type!r}); this model has hidden size {hidden} "
                         f"(model_type {model_type!r})")
    if cfg.model_type and model_type and cfg.model_type != model_type:
        raise ValueError(f"{source}: the prompt was trained for model_type {cfg.model_type!r}; this model is "
                         f"{model_type!r} (hidden size {hidden})")


# ---- the wrapper -------------------------------------------------------------------------------

def _config_attr(model: nn.Module, *names):
    for name in names:
        value = getattr(model.config, name, None)
        if value:
            return value
    return None


class PromptTuningModel(nn.Module):
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

    def __init__(self, model: nn.Module, config: Optional[PromptTuningConfig] = None, tokenizer=None,
                 **config_kwargs):
        super().__init__()
        if not hasattr(model, "get_input_embeddings") or model.get_input_embeddings() is None:
            raise ValueError(f"model: {type(model).__name__} has no input embeddings (get_input_embeddings)")
        self.base_model = model
        self.is_encoder_decoder = bool(getattr(model.config, "is_encoder_decoder", False))
        hidden = _config_attr(model, "hidden_size", "n_embd", "d_model")
        if not hidden:
            raise ValueError("model: its config has no hidden_size / n_embd / d_model")
        self.token_dim = int(hidden)
        embedding_dim = self.word_embeddings.weight.shape[1]
        if embedding_dim != self.token_dim:
            raise ValueError(f"model: word embeddings of width {embedding_dim} differ from the hidden size "
                             f"{self.token_dim}")
        self.model_type = str(getattr(model.config, "model_type", ""))
        for p in model.parameters():
            p.requires_grad_(False)
        if config is not None and type(config) is not self.config_class:
            hint = METHOD_CLASSES.get(getattr(config, "method", None))
            raise ValueError(f"config: {type(self).__name__} expects a {self.config_class.__name__}, got "
                             f"{type(config).__name__}" + (f" (use {hint.__name__})" if hint else ""))
        values = {f.name: getattr(config, f.name) for f in fields(self.config_class)} if config else {}
        values.update(config_kwargs)
        values.update(self._backbone_fields())
        if values.get("placement", "auto") == "auto":
            values["placement"] = "after_first" if self._is_first_token_encoder() else "front"
        if values.get("modules_to_save") is None:
            values["modules_to_save"] = self._default_modules_to_save()
        self.prompt_config = self.config_class(**values)
        if self.is_encoder_decoder and self.prompt_config.placement != "front":
            raise ValueError("placement: encoder-decoder models take the prompt in front of the encoder input "
                             "(placement='front')")
        self._check_dtype_device()
        self.prompt_encoder = self._build_encoder(self.prompt_config)
        self._initialise(self.prompt_config, tokenizer)
        for name in self.prompt_config.modules_to_save or []:
            self._saved_module(name).requires_grad_(True)

    def _is_first_token_encoder(self) -> bool:
        """A BERT-family encoder (bidirectional, reads [CLS] at position 0)."""
        cfg = self.base_model.config
        if self.is_encoder_decoder or getattr(cfg, "is_decoder", False):
            return False
        return self.model_type in ENCODER_TYPES

    def _default_modules_to_save(self) -> List[str]:
        name = type(self.base_model).__name__
        if name.endswith("ForSequenceClassification") or name.endswith("ForTokenClassification"):
            return [h for h in ("classifier", "score") if _has_submodule(self.base_model, h)][:1]
        return []

    def _check_dtype_device(self) -> None:
        weight = self.word_embeddings.weight
        if weight.dtype == torch.float16 and weight.device.type == "cpu":
            _warn_once(self, "fp16-cpu", "model: the backbone is float16 on the CPU, where float16 runs many times "
                       "slower than float32 (measured 25x on a real model); use float32 or bfloat16 on the CPU, or "
                       "move the model to a GPU", stacklevel=4)

    def _saved_module(self, name: str) -> nn.Module:
        try:
            return self.base_model.get_submodule(name)
        except AttributeError:
            raise ValueError(f"modules_to_save: {type(self.base_model).__name__} has no sub-module {name!r}") from None

    def _saved_module_parameters(self) -> Dict[str, nn.Parameter]:
        """``base_model.<module>.<parameter>`` -> parameter, for modules_to_save."""
        out = {}
        for name in self.prompt_config.modules_to_save or []:
            for pname, p in self._saved_module(name).named_parameters():
                out[f"base_model.{name}.{pname}"] = p
        return out

    # ---- construction ------------------------------------------------------------------------
    @property
    def word_embeddings(self) -> nn.Module:
        return self.base_model.get_input_embeddings()

    @property
    def config(self):
        """The backbone's config (what training utilities such as Trainer look for)."""
        return self.base_model.config

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

    def _soft_prompt(self) -> SoftPrompt:
        """The SoftPrompt module whose weight is saved as ``prompt_embeddings``."""
        return self.prompt_encoder

    @torch.no_grad()
    def _initialise(self, cfg: PromptTuningConfig, tokenizer) -> None:
        weight = self._soft_prompt().weight
        length, dim = weight.shape
        table = self.word_embeddings.weight
        gen = None
        if cfg.seed is not None:
            gen = torch.Generator(device="cpu").manual_seed(int(cfg.seed))
        if cfg.init == "random":
            std = float(table.detach().float().std()) if table.numel() > 1 else 0.02
            weight.copy_(torch.randn(length, dim, generator=gen) * std)
        elif cfg.init == "vocab":
            ids = torch.randint(0, table.shape[0], (length,), generator=gen)
            weight.copy_(table[ids.to(table.device)].float())
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
        prompt = self.prompt().to(embeds.dtype)
        prompt = prompt.unsqueeze(0).expand(batch, -1, -1)
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
    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None, labels=None, token_type_ids=None,
                position_ids=None, **kwargs):
        """The wrapped model's forward with the soft prompt placed in the input.

        labels: (B, T) token labels (causal LM, masked LM, token classification; -100 is inserted
        for the soft tokens), or (B,) class labels, or the decoder labels of an encoder-decoder
        model (unchanged). Per-token outputs over prompt + input (``logits``,
        ``last_hidden_state``, ``hidden_states``; the encoder's for encoder-decoder models) come
        back with the soft-token positions removed; ``attentions`` and the KV cache keep them.
        ``instruction_mask`` (an IAPT input) is accepted and ignored, with a warning the first
        time, so one collator serves every method.
        """
        if kwargs.pop("instruction_mask", None) is not None:
            _warn_once(self, "instruction_mask", f"instruction_mask: {type(self).__name__} does not use an "
                       "instruction mask (the soft prompt is the same for every input); it is ignored", stacklevel=3)
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
        if labels is not None:
            if not self.is_encoder_decoder:
                self._check_labels(labels, batch, length)
                if labels.dim() == 2 and labels.shape == (batch, length) and not self._is_sequence_classifier():
                    labels = self._insert(labels, labels.new_full((batch, num), -100))
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
    def generate(self, input_ids=None, attention_mask=None, **kwargs):
        """``generate()`` of the wrapped model with the soft prompt before the input.

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
        if (not self.is_encoder_decoder and attention_mask is not None and attention_mask.dim() == 2
                and attention_mask.shape[1] > 0 and not bool(attention_mask[:, -1].all())):
            _warn_once(self, "right-padding", "attention_mask: some prompts end in padding (right-padded); a decoder "
                       "then continues after the padding and its answers are wrong. Pad prompts on the left for "
                       "generate() (tokenizer.padding_side = 'left')", stacklevel=3)
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
        full = torch.cat([input_ids.to(sequences.device), sequences], dim=1)
        if isinstance(output, torch.Tensor):
            return full
        output.sequences = full
        return output

    def _decode_offset_hook(self, length: int):
        """During generate(): a hook on the input embeddings for the decoding steps (None when the
        method has no input offset)."""
        return None

    # ---- training helpers --------------------------------------------------------------------
    def trainable_parameters(self) -> List[nn.Parameter]:
        params = [p for p in self.prompt_encoder.parameters() if p.requires_grad]
        return params + [p for p in self._saved_module_parameters().values() if p.requires_grad]

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

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
        default of :data:`DEFAULT_LR` for the method (prompt tuning: prompt 3e-2, head 1e-3;
        DePT: prompt 3e-2, low-rank 1e-3; EPT: the same plus projection 1e-3); ``scale``
        multiplies every group's rate (a learning-rate sweep around the defaults). Any other
        keyword (``weight_decay``, ``betas``, ...) goes into every group. Giving a learning rate
        for a group the method does not have raises ValueError. Empty groups are left out.
        """
        given = {"lr_prompt": lr_prompt, "lr_lowrank": lr_lowrank, "lr_head": lr_head, "lr_projection": lr_projection}
        defaults = DEFAULT_LR[self.prompt_config.method]
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
        return dict(DEFAULT_LR[self.prompt_config.method])

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
    @staticmethod
    def _save_key(name: str) -> str:
        """Checkpoint key of a prompt_encoder state entry."""
        return {"weight": "prompt_embeddings", "prompt.weight": "prompt_embeddings",
                "offset.A": "lowrank_A", "offset.B": "lowrank_B"}.get(name, name)

    def _state_for_save(self) -> Tuple[Dict[str, torch.Tensor], bool]:
        """(checkpoint tensors, whether this process writes them): tensors sharded by FSDP2 are
        gathered (see :func:`fastprompt.methods._sharded.gather_for_save`)."""
        state = {self._save_key(name): tensor for name, tensor in self.prompt_encoder.state_dict().items()}
        state.update(self._saved_module_parameters())
        state, writer = gather_for_save(state)
        return {key: tensor.detach().contiguous().cpu() for key, tensor in state.items()}, writer

    def _load_state(self, state: Dict[str, torch.Tensor], source) -> None:
        own = self.prompt_encoder.state_dict()
        wanted = {self._save_key(name): name for name in own}
        saved = self._saved_module_parameters()
        missing = sorted((set(wanted) | set(saved)) - set(state))
        unexpected = sorted(set(state) - set(wanted) - set(saved))
        if missing or unexpected:
            raise ValueError(f"{source}: weights do not match a {self.prompt_config.method!r} prompt "
                             f"(missing {missing}, unexpected {unexpected})")
        for key, name in wanted.items():
            if tuple(state[key].shape) != tuple(own[name].shape):
                raise ValueError(f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}, expected "
                                 f"{tuple(own[name].shape)}")
        for key, p in saved.items():
            if tuple(state[key].shape) != tuple(p.shape):
                raise ValueError(f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}, expected "
                                 f"{tuple(p.shape)}")
        self.prompt_encoder.load_state_dict({name: state[key] for key, name in wanted.items()})
        with torch.no_grad():
            for key, p in saved.items():
                p.copy_(state[key].to(p.device, p.dtype))

    def save_pretrained(self, directory: Union[str, Path]) -> None:
        """Write ``prompt_config.json`` and ``prompt_weights.safetensors``. Under FSDP2 call it on
        every rank: the shards are gathered and rank 0 writes."""
        from safetensors.torch import save_file

        state, writer = self._state_for_save()
        if not writer:
            return
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / CONFIG_NAME).write_text(json.dumps(self.prompt_config.to_dict(), indent=2))
        save_file(state, str(directory / WEIGHTS_NAME), metadata={"format": "pt", "method": self.prompt_config.method})

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: Union[str, Path]) -> "PromptTuningModel":
        """Load a prompt written by :meth:`save_pretrained` onto ``model`` (the class follows the
        saved method when called on :class:`PromptTuningModel`).

        Raises ValueError when the prompt was trained for a different backbone."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = _checkpoint_files(directory)
        data = json.loads(config_path.read_text())
        method = data.get("method", "prompt_tuning")
        if method not in CONFIG_CLASSES:
            raise ValueError(f"{config_path}: unknown method {method!r}; expected one of {sorted(CONFIG_CLASSES)}")
        klass = METHOD_CLASSES[method]
        if not issubclass(klass, cls):
            raise ValueError(f"{config_path}: holds a {method!r} prompt, which {cls.__name__} cannot load (use "
                             f"{klass.__name__} or PromptTuningModel.from_pretrained)")
        cfg = CONFIG_CLASSES[method].from_dict(data)
        _check_backbone(cfg, model, directory)
        values = {f.name: getattr(cfg, f.name) for f in fields(cfg) if f.name not in BACKBONE_FIELDS}
        values["init"] = "random"
        wrapper = klass(model, CONFIG_CLASSES[method](**values))
        wrapper.prompt_config.init = data.get("init", cfg.init)
        wrapper.prompt_config.seed = cfg.seed
        wrapper._load_state(load_file(str(weights_path)), weights_path)
        return wrapper

    def load_weights(self, directory: Union[str, Path]) -> None:
        """Load the prompt (and modules_to_save) written by :meth:`save_pretrained` into this
        model in place (e.g. to resume training). Raises ValueError when the checkpoint holds
        another method, another placement, or tensors of other shapes."""
        from safetensors.torch import load_file

        directory = Path(directory)
        config_path, weights_path = _checkpoint_files(directory)
        data = json.loads(config_path.read_text())
        method = data.get("method", "prompt_tuning")
        if method != self.prompt_config.method:
            raise ValueError(f"{config_path}: holds a {method!r} prompt; this model is {self.prompt_config.method!r}")
        cfg = CONFIG_CLASSES[method].from_dict(data)
        _check_backbone(cfg, self.base_model, directory)
        if cfg.placement != self.prompt_config.placement:
            raise ValueError(f"{config_path}: the prompt was trained with placement {cfg.placement!r}; this model uses "
                             f"{self.prompt_config.placement!r}")
        self._load_state(load_file(str(weights_path)), weights_path)

    # ---- PEFT interop ------------------------------------------------------------------------
    def _peft_task_type(self) -> str:
        name = type(self.base_model).__name__
        if self.is_encoder_decoder:
            return "SEQ_2_SEQ_LM"
        if name.endswith("ForSequenceClassification"):
            return "SEQ_CLS"
        if name.endswith("ForTokenClassification"):
            return "TOKEN_CLS"
        if name.endswith("ForQuestionAnswering"):
            return "QUESTION_ANS"
        if name.endswith("ForCausalLM") or name.endswith("LMHeadModel"):
            return "CAUSAL_LM"
        return "FEATURE_EXTRACTION"

    def export_peft(self, directory: Union[str, Path]) -> None:
        """Write a PEFT prompt-tuning adapter (``adapter_config.json``, ``adapter_model.safetensors``
        with ``prompt_embeddings`` (L, d)) that ``peft.PeftModel.from_pretrained`` loads.

        Only plain prompt tuning maps onto PEFT; DePT's and EPT's input offsets have no PEFT form."""
        if type(self.prompt_config) is not PromptTuningConfig:
            raise ValueError(f"export_peft: PEFT prompt tuning has no form for {self.prompt_config.method!r} "
                             "(its low-rank input offset); use save_pretrained")
        if self.prompt_config.placement != "front":
            raise ValueError(f"export_peft: PEFT puts the soft tokens before the whole input; this prompt was placed "
                             f"{self.prompt_config.placement!r} (after [CLS]) and would give other outputs there. "
                             "Train with placement='front' to export to PEFT, or use save_pretrained")
        from safetensors.torch import save_file

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        layers = _config_attr(self.base_model, "num_hidden_layers", "n_layer", "num_layers")
        heads = _config_attr(self.base_model, "num_attention_heads", "n_head", "num_heads")
        peft_config = {
            "peft_type": "PROMPT_TUNING",
            "task_type": self._peft_task_type(),
            "auto_mapping": None,
            "base_model_name_or_path": self.prompt_config.base_model_name_or_path,
            "revision": None,
            "inference_mode": True,
            "num_virtual_tokens": self.num_virtual_tokens,
            "token_dim": self.token_dim,
            "num_transformer_submodules": 1,
            "num_attention_heads": heads,
            "num_layers": layers,
            "prompt_tuning_init": "RANDOM",
            "prompt_tuning_init_text": None,
            "tokenizer_name_or_path": self.prompt_config.tokenizer_name_or_path,
            "tokenizer_kwargs": None,
            "modules_to_save": None,
        }
        state = {"prompt_embeddings": self._soft_prompt().weight.detach().contiguous().cpu()}
        # PEFT trains (and expects in the adapter) the classification head of SEQ_CLS / TOKEN_CLS
        # models, and any other modules_to_save; write the backbone's current ones
        saved = list(self.prompt_config.modules_to_save or [])
        if peft_config["task_type"] in ("SEQ_CLS", "TOKEN_CLS"):
            saved += [h for h in ("classifier", "score") if h not in saved and _has_submodule(self.base_model, h)]
        for name in saved:
            for pname, p in self._saved_module(name).named_parameters():
                state[f"base_model.{name}.{pname}"] = p.detach().contiguous().cpu()
        peft_config["modules_to_save"] = saved or None
        (directory / PEFT_CONFIG_NAME).write_text(json.dumps(peft_config, indent=2))
        save_file(state, str(directory / PEFT_WEIGHTS_NAME), metadata={"format": "pt"})

    @classmethod
    def from_peft(cls, model: nn.Module, directory: Union[str, Path]) -> "PromptTuningModel":
        """Load a PEFT prompt-tuning adapter (``adapter_config.json`` with peft_type PROMPT_TUNING and
        ``adapter_model.safetensors`` / ``.bin`` holding ``prompt_embeddings``) onto ``model``.
        The prompt keeps PEFT's placement (before the whole input, ``placement="front"``), so the
        outputs equal PEFT's, BERT-family models included.

        For encoder-decoder adapters saved with two transformer submodules, the first L rows
        (the encoder prompt, the only part PEFT's prompt tuning feeds to the model) are used."""
        if cls is not PromptTuningModel:
            raise ValueError(f"from_peft: PEFT prompt-tuning adapters load as PromptTuningModel, not {cls.__name__}")
        directory = Path(directory)
        config_path = directory / PEFT_CONFIG_NAME
        if not directory.is_dir():
            raise FileNotFoundError(f"directory: {directory} does not exist (expected a folder with {PEFT_CONFIG_NAME} "
                                    f"and {PEFT_WEIGHTS_NAME}, written by PEFT's save_pretrained)")
        if not config_path.is_file():
            raise FileNotFoundError(f"directory: expected {PEFT_CONFIG_NAME} in {directory}")
        data = json.loads(config_path.read_text())
        peft_type = str(data.get("peft_type", "")).upper()
        if peft_type != "PROMPT_TUNING":
            raise ValueError(f"{config_path}: expected a PEFT prompt-tuning adapter (peft_type PROMPT_TUNING), got "
                             f"{data.get('peft_type')!r}")
        length = int(data["num_virtual_tokens"])
        token_dim = data.get("token_dim")
        if directory.joinpath(PEFT_WEIGHTS_NAME).is_file():
            from safetensors.torch import load_file

            state = load_file(str(directory / PEFT_WEIGHTS_NAME))
        elif directory.joinpath(PEFT_WEIGHTS_NAME_BIN).is_file():
            state = torch.load(directory / PEFT_WEIGHTS_NAME_BIN, map_location="cpu", weights_only=True)
        else:
            raise FileNotFoundError(f"directory: expected {PEFT_WEIGHTS_NAME} in {directory}")
        if "prompt_embeddings" not in state:
            raise ValueError(f"{directory}: the adapter holds no 'prompt_embeddings' (keys {sorted(state)})")
        weight = state["prompt_embeddings"]
        hidden = _config_attr(model, "hidden_size", "n_embd", "d_model")
        if weight.dim() != 2 or weight.shape[0] < length:
            raise ValueError(f"{directory}: prompt_embeddings of shape {tuple(weight.shape)} do not hold "
                             f"{length} virtual tokens")
        if (token_dim and int(token_dim) != int(hidden)) or weight.shape[1] != int(hidden):
            raise ValueError(f"{directory}: the adapter was trained for a backbone with hidden size "
                             f"{weight.shape[1]}; this model has hidden size {hidden}")
        # modules PEFT saved with the prompt (e.g. a trained classification head): base_model.<module>.<param>
        heads = sorted({k[len("base_model."):].rsplit(".", 1)[0] for k in state if k.startswith("base_model.")})
        heads = [h.replace(".modules_to_save.default", "") for h in heads]
        config = PromptTuningConfig(num_virtual_tokens=length, init="tensor", init_tensor=weight[:length].float(),
                                    tokenizer_name_or_path=data.get("tokenizer_name_or_path"),
                                    modules_to_save=heads, placement="front")
        wrapper = cls(model, config)
        with torch.no_grad():
            for key, p in wrapper._saved_module_parameters().items():
                if key not in state:
                    raise ValueError(f"{directory}: the adapter has no tensor {key!r}")
                p.copy_(state[key].to(p.device, p.dtype))
        return wrapper

    def extra_repr(self) -> str:
        return (f"method={self.prompt_config.method}, num_virtual_tokens={self.num_virtual_tokens}, "
                f"token_dim={self.token_dim}, model_type={self.model_type!r}")


class DePTModel(PromptTuningModel):
    """DePT on a frozen transformers model: a short prompt of m soft tokens before the input and a
    low-rank offset A @ B added to the input token embeddings by position (B zero-initialised).

    Use :meth:`param_groups` for the separate learning rates of the prompt and the low-rank pair
    (DePT trains the low-rank pair with a much smaller learning rate than the prompt)."""

    config_class = DePTConfig

    def _build_encoder(self, cfg: DePTConfig) -> nn.Module:
        return DePTPrompt(cfg.num_virtual_tokens, cfg.max_len, cfg.rank, self.token_dim, device=self._device(),
                          dtype=torch.float32)

    def _soft_prompt(self) -> SoftPrompt:
        return self.prompt_encoder.prompt

    def embed_inputs(self, input_ids=None, inputs_embeds=None) -> torch.Tensor:
        embeds = super().embed_inputs(input_ids, inputs_embeds)
        return self.prompt_encoder.offset(embeds)

    def _decode_offset_hook(self, length: int):
        """The tokens generated after the input get the offset of their positions too (T, T+1, ...),
        as they do in forward() on the whole sequence: the decoding steps embed new tokens
        through the input-embedding module, which this hook extends. A generation that runs past
        max_len raises ValueError."""
        offset = self.prompt_encoder.offset
        state = {"position": length}

        def hook(module, args, output):
            start = state["position"]
            state["position"] = start + output.shape[-2]
            return output + offset.rows(start, start + output.shape[-2]).to(output.dtype)

        return self.word_embeddings.register_forward_hook(hook)

    def lowrank_parameters(self) -> List[nn.Parameter]:
        return [self.prompt_encoder.offset.A, self.prompt_encoder.offset.B]

    def _group_parameters(self) -> Dict[str, List[nn.Parameter]]:
        low = {id(p) for p in self.lowrank_parameters()}
        groups = super()._group_parameters()
        groups["lr_lowrank"] = [p for p in self.lowrank_parameters() if p.requires_grad]
        groups["lr_prompt"] = [p for p in groups["lr_prompt"] if id(p) not in low]
        return groups


class EPTModel(DePTModel):
    """EPT on a frozen transformers model: DePT's low-rank offset of the input embeddings, and
    the short prompt fused with the low-rank knowledge and passed through a gated multi-space
    projection (:class:`fastprompt.nn.EPTPrompt` has the exact formulation) before the input.

    :meth:`param_groups` puts the short prompt at ``lr_prompt``, the low-rank pair at
    ``lr_lowrank`` and the projection and its gate at ``lr_projection``."""

    config_class = EPTConfig

    def _group_parameters(self) -> Dict[str, List[nn.Parameter]]:
        groups = super()._group_parameters()
        projection = {id(p) for p in self.prompt_encoder.projection.parameters()}
        groups["lr_projection"] = [p for p in self.prompt_encoder.projection.parameters() if p.requires_grad]
        groups["lr_prompt"] = [p for p in groups["lr_prompt"] if id(p) not in projection]
        return groups

    def _build_encoder(self, cfg: EPTConfig) -> nn.Module:
        return EPTPrompt(cfg.num_virtual_tokens, cfg.max_len, cfg.rank, self.token_dim, num_spaces=cfg.num_spaces,
                         gate=cfg.gate, projection_init_scale=cfg.projection_init_scale, device=self._device(),
                         dtype=torch.float32)


METHOD_CLASSES = {"prompt_tuning": PromptTuningModel, "dept": DePTModel, "ept": EPTModel}


def _build_trainer_class():
    import transformers

    class PromptTuningTrainer(transformers.Trainer):
        """transformers.Trainer whose checkpoints hold the prompt only, in the
        :meth:`PromptTuningModel.save_pretrained` format (loadable with ``from_pretrained``).
        (The plain Trainer would write the whole backbone, which fails for tied weights.)

        - ``train(resume_from_checkpoint=...)`` (a checkpoint folder or True for the last one)
          restores the prompt (and modules_to_save) into the model, and the Trainer restores the
          optimizer, the scheduler, the RNG states and the data position from the same folder, so
          a resumed run ends where an uninterrupted one does.
        - ``load_best_model_at_end`` reloads the best checkpoint's prompt.
        - Without ``optimizers``, the optimizer is AdamW (or ``args.optim``) over
          :meth:`PromptTuningModel.param_groups`: the method's default learning rates, not
          ``args.learning_rate`` (whose default of 5e-5 is far too small for soft prompts); pass
          ``param_groups={"lr_prompt": ..., "scale": ...}`` to change them, or your own optimizer
          in ``optimizers=(optimizer, None)``. ``args.weight_decay`` applies to every group.
        """

        def __init__(self, *args, param_groups: Optional[dict] = None, **kwargs):
            self.param_group_kwargs = dict(param_groups or {})
            super().__init__(*args, **kwargs)

        def _prompt_model(self):
            model = self.accelerator.unwrap_model(self.model)
            return model if isinstance(model, PromptTuningModel) else None

        def create_optimizer(self, model=None):
            wrapper = self._prompt_model()
            if self.optimizer is not None or wrapper is None:
                return super().create_optimizer(model)
            optimizer_cls, optimizer_kwargs = transformers.Trainer.get_optimizer_cls_and_kwargs(self.args)
            optimizer_kwargs.pop("lr", None)
            kwargs = {"weight_decay": self.args.weight_decay, **self.param_group_kwargs}
            self.optimizer = optimizer_cls(wrapper.param_groups(**kwargs), **optimizer_kwargs)
            return self.optimizer

        def _save(self, output_dir=None, state_dict=None):
            output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
            if not self.args.should_save:
                return
            model = self._prompt_model()
            if model is None:
                return super()._save(str(output_dir), state_dict)
            model.save_pretrained(output_dir)
            torch.save(self.args, output_dir / transformers.trainer.TRAINING_ARGS_NAME)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            wrapper = self._prompt_model()
            if wrapper is None:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            wrapper.load_weights(resume_from_checkpoint)

        def _load_best_model(self):
            wrapper = self._prompt_model()
            if wrapper is None:
                return super()._load_best_model()
            wrapper.load_weights(self.state.best_model_checkpoint)

    return PromptTuningTrainer


def __getattr__(name):  # the Trainer is built on first use, so importing this module needs no transformers
    if name == "PromptTuningTrainer":
        cls = _build_trainer_class()
        globals()["PromptTuningTrainer"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
