"""Reading tuned soft prompts from prompt-tuning checkpoints.

Formats:

* a fastprompt prompt-tuning adapter folder (``save_pretrained``): ``fastprompt_config.json`` and
  ``fastprompt_weights.safetensors`` (or the earlier ``prompt_config.json`` /
  ``prompt_weights.safetensors``), tensor ``prompt_embeddings``, (L, d);
* PEFT prompt tuning: a directory with ``adapter_config.json`` (``peft_type`` PROMPT_TUNING) and
  ``adapter_model.safetensors`` (or the older ``adapter_model.bin``), tensor ``prompt_embeddings``;
* a single ``.safetensors`` file holding ``prompt_embeddings`` (or one 2-D tensor).

Every failure (missing file, truncated or garbage file, wrong adapter type, missing tensor,
shape disagreeing with the config) raises ValueError naming the ``path`` argument; a missing
file raises :class:`CheckpointNotFoundError`, which is both a FileNotFoundError and a ValueError.
"""
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Tuple, Union

import torch

from fastprompt.methods.base import CONFIG_NAME, LEGACY_FILES, PEFT_CONFIG_NAME, WEIGHTS_NAME
from fastprompt.methods.base import AdapterNotFoundError as CheckpointNotFoundError  # noqa: F401
from fastprompt.methods.base import checkpoint_files

# (config, weights) file names of fastprompt adapter folders, current and earlier
FASTPROMPT_FILES = ((CONFIG_NAME, WEIGHTS_NAME),) + tuple((c, w) for c, w, _ in LEGACY_FILES)
PEFT_CONFIG = PEFT_CONFIG_NAME
PEFT_WEIGHTS = ("adapter_model.safetensors", "adapter_model.bin")
PROMPT_KEY = "prompt_embeddings"


@dataclass
class PromptCheckpoint:
    weight: torch.Tensor                      # (L, d)
    metadata: Dict[str, Any] = field(default_factory=dict)
    format: str = ""


def read_safetensors(path: Union[str, Path], device=None) -> Tuple[Dict[str, torch.Tensor], Dict[str, str]]:
    """(tensors, header metadata) of a safetensors file, with clear errors."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise CheckpointNotFoundError(f"path: no such file {path}")
    try:
        tensors = {}
        with safe_open(str(path), framework="pt", device=str(device) if device is not None else "cpu") as f:
            meta = dict(f.metadata() or {})
            for key in f.keys():
                tensors[key] = f.get_tensor(key)
    except Exception as exc:  # safetensors raises its own error type (and OSError / ValueError)
        raise ValueError(f"path: cannot read {path}: corrupted or truncated safetensors file ({exc})") from None
    return tensors, meta


def _read_torch(path: Path, device=None) -> Dict[str, torch.Tensor]:
    if not path.is_file():
        raise CheckpointNotFoundError(f"path: no such file {path}")
    try:
        state = torch.load(str(path), map_location=device or "cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"path: cannot read {path}: corrupted or truncated checkpoint ({exc})") from None
    if not isinstance(state, dict):
        raise ValueError(f"path: {path} holds a {type(state).__name__}, expected a state dict")
    return state


def _read_json(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise CheckpointNotFoundError(f"path: no such file {path}")
    try:
        data = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"path: corrupted config {path} ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"path: corrupted config {path} (expected a JSON object)")
    return data


def _prompt_tensor(tensors: Dict[str, torch.Tensor], path: Path) -> torch.Tensor:
    if PROMPT_KEY in tensors:
        t = tensors[PROMPT_KEY]
    else:
        matrices = [k for k, v in tensors.items() if v.dim() == 2]
        if len(matrices) != 1:
            raise ValueError(f"path: {path} holds no {PROMPT_KEY!r} tensor (keys: {sorted(tensors)})")
        t = tensors[matrices[0]]
    if t.dim() != 2 or not t.is_floating_point():
        raise ValueError(f"path: the prompt in {path} has shape {tuple(t.shape)} and dtype {t.dtype}; "
                         "expected a floating (L, d) tensor")
    return t


def _first(data: Dict[str, Any], *keys):
    for k in keys:
        if data.get(k) is not None:
            return data[k]
    return None


def read_fastprompt(directory: Path, device=None) -> PromptCheckpoint:
    config_path, weights_path, _ = checkpoint_files(directory, "path")
    config = _read_json(config_path)
    tensors, meta = read_safetensors(weights_path, device=device)
    weight = _prompt_tensor(tensors, weights_path)
    length = _first(config, "num_virtual_tokens", "num_tokens")
    if length is not None and int(length) != weight.shape[0]:
        raise ValueError(f"path: {config_path} says {length} virtual tokens but the weights hold "
                         f"{weight.shape[0]}")
    seed = _first(config, "init_seed", "seed")
    metadata = {
        "base_model": _first(config, "base_model", "base_model_name_or_path", "model_name_or_path"),
        "init_seed": int(seed) if seed is not None else None,
        "task": _first(config, "task", "task_name"),
        "config": config,
    }
    return PromptCheckpoint(weight, metadata, "fastprompt")


def read_peft(directory: Path, device=None) -> PromptCheckpoint:
    config = _read_json(directory / PEFT_CONFIG)
    peft_type = str(config.get("peft_type", "")).upper()
    if peft_type != "PROMPT_TUNING":
        raise ValueError(f"path: {directory} holds a PEFT {peft_type or 'unknown'} adapter; expected a "
                         "PROMPT_TUNING adapter")
    for name in PEFT_WEIGHTS:
        weights = directory / name
        if weights.exists():
            break
    else:
        raise CheckpointNotFoundError(f"path: {directory} has neither {' nor '.join(PEFT_WEIGHTS)}")
    if weights.suffix == ".safetensors":
        tensors, _ = read_safetensors(weights, device=device)
    else:
        tensors = _read_torch(weights, device=device)
    weight = _prompt_tensor(tensors, weights)
    length = config.get("num_virtual_tokens")
    if length is not None:
        total = int(length) * int(config.get("num_transformer_submodules") or 1)
        if weight.shape[0] != total:
            raise ValueError(f"path: {directory / PEFT_CONFIG} implies {total} prompt rows but the weights hold "
                             f"{weight.shape[0]}")
    dim = config.get("token_dim")
    if dim is not None and int(dim) != weight.shape[1]:
        raise ValueError(f"path: {directory / PEFT_CONFIG} says token_dim {dim} but the weights have {weight.shape[1]}")
    metadata = {"base_model": config.get("base_model_name_or_path"), "init_seed": None, "task": None,
                "config": config}
    return PromptCheckpoint(weight, metadata, "peft")


def read_prompt(path: Union[str, Path], device=None) -> PromptCheckpoint:
    """The soft prompt (L, d) stored at ``path`` (any format above) and what its config says."""
    if not isinstance(path, (str, Path)):
        raise TypeError(f"path: expected a str or Path, got {type(path).__name__}")
    path = Path(path)
    if not path.exists():
        raise CheckpointNotFoundError(f"path: no such checkpoint {path}")
    if path.is_file():
        if path.suffix in (".bin", ".pt", ".pth"):
            tensors = _read_torch(path, device=device)
        else:
            tensors, _ = read_safetensors(path, device=device)
        return PromptCheckpoint(_prompt_tensor(tensors, path), {}, "file")
    if any((path / name).exists() for pair in FASTPROMPT_FILES for name in pair):
        return read_fastprompt(path, device=device)
    if (path / PEFT_CONFIG).exists():
        return read_peft(path, device=device)
    raise CheckpointNotFoundError(f"path: {path} contains neither a fastprompt prompt-tuning checkpoint "
                                  f"({CONFIG_NAME}) nor a PEFT adapter ({PEFT_CONFIG})")
