"""What every fastprompt method shares: a frozen transformers backbone with named adapters.

:class:`AdapterModel` owns freezing the backbone, reading its shape, the registry of adapters by
name (add / load / set active / delete), the checkpoint format and its checks, and the
post-processing of outputs and of ``generate``. A method subclasses it and provides

* ``config_class``: its :class:`AdapterConfig` dataclass (``method`` names the method);
* ``_build_adapter(config, **kwargs) -> nn.Module``: one freshly initialised adapter;
* ``_adapter_tensors(name) -> {checkpoint key: live tensor}``: what a checkpoint of that adapter
  holds (saving copies these tensors out, loading copies into them after checking names and shapes);
* ``param_groups(...)``: optimizer parameter groups with the method's default learning rates;
* ``forward`` / ``generate``.

Checkpoint folders (every method): ``fastprompt_config.json`` (the adapter's config, with its
``method``) and ``fastprompt_weights.safetensors`` (its tensors, ``modules_to_save`` included). The
active adapter goes in the folder itself, other adapters in sub-folders named after them. Both files
are written to a temporary name first and renamed, so an interrupted save never leaves a truncated
adapter behind. Folders in the earlier per-method names (``prompt_config.json`` /
``prompt_weights.safetensors``, ``iapt_config.json`` / ``iapt_generators.safetensors``) load too.
"""
import inspect
import json
import os
import tempfile
import warnings
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import torch
from torch import nn

CONFIG_NAME = "fastprompt_config.json"
WEIGHTS_NAME = "fastprompt_weights.safetensors"
# (config, weights, method of a config without a "method" key) of folders written before one name
# served every method
LEGACY_FILES = (("prompt_config.json", "prompt_weights.safetensors", "prompt_tuning"),
                ("iapt_config.json", "iapt_generators.safetensors", "iapt"))
PEFT_CONFIG_NAME = "adapter_config.json"

# method name -> AdapterModel subclass (filled in by the subclasses)
METHODS: Dict[str, type] = {}


class AdapterNotFoundError(FileNotFoundError, ValueError):
    """An adapter folder or one of its files is missing (both a FileNotFoundError and a ValueError)."""


def warn_once(owner, key: str, message: str, stacklevel: int = 3) -> None:
    """``message`` as a UserWarning, once per ``owner`` object and ``key``."""
    seen = owner.__dict__.setdefault("_warned", set())
    if key not in seen:
        seen.add(key)
        warnings.warn(message, UserWarning, stacklevel=stacklevel)


def config_attr(model: nn.Module, *names):
    """The first of ``names`` that the model's config sets to a true value, else None."""
    config = getattr(model, "config", None)
    for name in names:
        value = getattr(config, name, None)
        if value:
            return value
    return None


def hidden_size(model: nn.Module) -> int:
    """The backbone's hidden size (``hidden_size``, ``n_embd`` or ``d_model`` of its config)."""
    value = config_attr(model, "hidden_size", "n_embd", "d_model")
    if not value:
        raise ValueError(f"model: the config of {type(model).__name__} has no hidden_size / n_embd / d_model")
    return int(value)


def positive_int(name: str, value) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name}: expected a positive int, got {value!r}")


def has_submodule(model: nn.Module, name: str) -> bool:
    try:
        model.get_submodule(name)
        return True
    except AttributeError:
        return False


def takes_logits_to_keep(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (transformers' causal LMs: the LM head
    then projects only the last positions)."""
    try:
        return "logits_to_keep" in inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False


def replace_sequences(result, sequences: torch.Tensor):
    """``generate``'s result (a tensor, or an output object with ``sequences``) with its
    sequences replaced."""
    if isinstance(result, torch.Tensor):
        return sequences
    result.sequences = sequences
    return result


def _atomic_write(path: Path, write) -> None:
    """``write(temporary path)``, then rename it to ``path`` (same folder, so the rename is atomic)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    os.close(fd)
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def checkpoint_files(directory: Union[str, Path], argument: str = "directory") -> Tuple[Path, Path, str]:
    """(config path, weights path, method of a legacy config without "method") of an adapter
    folder. AdapterNotFoundError naming the folder and the files expected otherwise."""
    directory = Path(directory)
    expected = f"{CONFIG_NAME} and {WEIGHTS_NAME}"
    if not directory.is_dir():
        raise AdapterNotFoundError(f"{argument}: {directory} does not exist (expected a folder holding {expected}, "
                                   "written by save_pretrained)")
    for config_name, weights_name, method in ((CONFIG_NAME, WEIGHTS_NAME, ""),) + LEGACY_FILES:
        if (directory / config_name).is_file() or (directory / weights_name).is_file():
            missing = [n for n in (config_name, weights_name) if not (directory / n).is_file()]
            if missing:
                raise AdapterNotFoundError(f"{argument}: {directory} has {config_name if missing[0] == weights_name else weights_name} "
                                           f"but no {missing[0]} (expected {config_name} and {weights_name}, "
                                           "written by save_pretrained)")
            return directory / config_name, directory / weights_name, method
    hint = ""
    if (directory / PEFT_CONFIG_NAME).is_file():
        hint = f"; it holds a PEFT adapter ({PEFT_CONFIG_NAME}): load it with PromptTuningModel.from_peft"
    raise AdapterNotFoundError(f"{argument}: {directory} has no {CONFIG_NAME} and no {WEIGHTS_NAME} "
                               f"(expected {expected}, written by save_pretrained){hint}")


def read_checkpoint(directory: Union[str, Path], argument: str = "directory") -> Tuple["AdapterConfig", Path]:
    """(config, weights path) of an adapter folder written by :meth:`AdapterModel.save_pretrained`."""
    config_path, weights_path, legacy_method = checkpoint_files(directory, argument)
    try:
        data = json.loads(config_path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{argument}: {config_path} is not valid JSON ({err})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{argument}: {config_path} holds no config object")
    method = data.get("method") or legacy_method or "prompt_tuning"
    if method not in METHODS:
        raise ValueError(f"{config_path}: unknown method {method!r}; expected one of {sorted(METHODS)}")
    data["method"] = method
    return METHODS[method].config_class.from_dict(data), weights_path


@dataclass
class AdapterConfig:
    """Base of the methods' configs: ``method`` (a class attribute) names the method; the fields
    in ``BACKBONE_FIELDS`` describe the backbone the adapter belongs to and are filled in from it."""

    # class attributes, not dataclass fields (no annotations)
    method = ""
    BACKBONE_FIELDS = ()
    UNSAVED_FIELDS = ()  # fields a checkpoint's JSON leaves out (e.g. an initial tensor)

    def to_dict(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.UNSAVED_FIELDS}
        return {"method": self.method, **json.loads(json.dumps(data, default=list))}

    @classmethod
    def from_dict(cls, data: dict) -> "AdapterConfig":
        data = dict(data)
        method = data.pop("method", cls.method)
        if method != cls.method:
            raise ValueError(f"config: expected a {cls.method!r} config, got method {method!r}")
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"config: unknown {cls.method} config fields {unknown}")
        return cls(**cls.upgrade(data))

    @classmethod
    def upgrade(cls, data: dict) -> dict:
        """Fill in what configs written by earlier versions lack."""
        return data

    def hyper_parameters(self) -> dict:
        """The fields that do not describe the backbone."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name not in self.BACKBONE_FIELDS}


class AdapterModel(nn.Module):
    """A frozen transformers backbone with named, trainable adapters of one method."""

    config_class = AdapterConfig

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        method = cls.__dict__.get("config_class", None)
        if method is not None and method.method:
            METHODS[method.method] = cls

    def __init__(self, model: nn.Module):
        super().__init__()
        if not isinstance(model, nn.Module) or getattr(model, "config", None) is None:
            raise ValueError(f"model: expected a transformers model (an nn.Module with a config), got "
                             f"{type(model).__name__}")
        self.base_model = model
        self.model_type = str(getattr(model.config, "model_type", ""))
        for p in model.parameters():
            p.requires_grad_(False)
        self.adapters = nn.ModuleDict()
        self.adapter_configs: Dict[str, AdapterConfig] = {}
        self.active_adapter: Optional[str] = None
        self._check_dtype_device()

    def _check_dtype_device(self) -> None:
        for p in self.base_model.parameters():
            if p.dtype == torch.float16 and p.device.type == "cpu":
                warn_once(self, "fp16-cpu", "model: the backbone is float16 on the CPU, where float16 runs many "
                          "times slower than float32 (measured 25x on a real model); use float32 or bfloat16 on "
                          "the CPU (model.float()), or move the model to a GPU", stacklevel=4)
            return

    # ---- the registry ------------------------------------------------------------------------
    @property
    def config(self):
        """The backbone's config (what training utilities such as Trainer look for)."""
        return self.base_model.config

    @property
    def adapter_names(self) -> List[str]:
        return list(self.adapters.keys())

    @property
    def adapter_config(self) -> AdapterConfig:
        """The config of the active adapter."""
        return self.adapter_configs[self.active_adapter]

    def _backbone_fields(self) -> dict:
        """Values of the config's BACKBONE_FIELDS for this backbone."""
        return {}

    def _check_adapter(self, name, argument: str = "adapter_name") -> None:
        if name not in self.adapters:
            raise ValueError(f"{argument}: unknown adapter {name!r}; known adapters: {self.adapter_names}")

    def _make_config(self, config: Optional[AdapterConfig], config_kwargs: dict) -> AdapterConfig:
        if config is not None and type(config) is not self.config_class:
            hint = METHODS.get(getattr(config, "method", None))
            raise ValueError(f"config: {type(self).__name__} expects a {self.config_class.__name__}, got "
                             f"{type(config).__name__}" + (f" (use {hint.__name__})" if hint else ""))
        values = {f.name: getattr(config, f.name) for f in fields(self.config_class)} if config is not None else {}
        values.update(config_kwargs)
        values.update(self._backbone_fields())
        return self.config_class(**values)

    def _build_adapter(self, config: AdapterConfig, **kwargs) -> nn.Module:
        raise NotImplementedError

    def add_adapter(self, name: str, config: Optional[AdapterConfig] = None, **config_kwargs) -> nn.Module:
        """Add a freshly initialised adapter named ``name`` (the first one added becomes active)."""
        if not isinstance(name, str) or not name or "/" in name or "." in name:
            raise ValueError(f"adapter_name: expected a non-empty name without '/' or '.', got {name!r}")
        if name in self.adapters:
            raise ValueError(f"adapter_name: an adapter named {name!r} exists already")
        extra = {k: config_kwargs.pop(k) for k in self._build_kwargs if k in config_kwargs}
        cfg = self._make_config(config, config_kwargs)
        return self._register(name, cfg, self._build_adapter(cfg, **extra))

    # keyword arguments of add_adapter that go to _build_adapter rather than into the config
    _build_kwargs: Tuple[str, ...] = ()

    def _register(self, name: str, cfg: AdapterConfig, module: nn.Module) -> nn.Module:
        self.adapters[name] = module
        self.adapter_configs[name] = cfg
        if self.active_adapter is None or self.active_adapter not in self.adapters:
            self.active_adapter = name
        return module

    def tenant_names(self, tenant_ids, batch: int) -> List[str]:
        """The adapter name of each of ``batch`` rows from ``tenant_ids``: one adapter name for every
        row, or one name or index into :attr:`adapter_names` per row (a sequence or a (B,) tensor)."""
        if isinstance(tenant_ids, torch.Tensor):
            tenant_ids = tenant_ids.tolist()
        if isinstance(tenant_ids, str):
            tenant_ids = [tenant_ids] * batch
        tenant_ids = list(tenant_ids)
        if len(tenant_ids) != batch:
            raise ValueError(f"tenant_ids: expected one tenant per row ({batch}), got {len(tenant_ids)}")
        names, rows = self.adapter_names, []
        for tenant in tenant_ids:
            if isinstance(tenant, int) and not isinstance(tenant, bool):
                if not 0 <= tenant < len(names):
                    raise ValueError(f"tenant_ids: unknown tenant index {tenant}; adapters are {names}")
                tenant = names[tenant]
            if not self._is_tenant(tenant):
                self._check_adapter(tenant, "tenant_ids")
            rows.append(tenant)
        return rows

    def _is_tenant(self, name) -> bool:
        """Whether ``name`` can serve a row (an adapter; prompt tuning also takes prompt-bank names)."""
        return name in self.adapters

    def adapter_memory(self) -> Dict[str, int]:
        """Bytes of each adapter's tensors (parameters and buffers; a tensor shared within an
        adapter counts once): what serving one more adapter costs."""
        report = {}
        for name, module in self.adapters.items():
            seen = {}
            for t in list(module.parameters()) + list(module.buffers()):
                seen[id(t)] = t.numel() * t.element_size()
            report[name] = sum(seen.values())
        return report

    def set_active_adapter(self, name: str) -> None:
        """The adapter that calls without ``tenant_ids`` use (and that training updates)."""
        self._check_adapter(name)
        self.active_adapter = name

    def delete_adapter(self, name: str) -> None:
        """Remove an adapter (not the only one). Deleting the active adapter activates the first
        remaining one."""
        self._check_adapter(name)
        if len(self.adapters) == 1:
            raise ValueError(f"adapter_name: {name!r} is the only adapter; a model needs at least one")
        del self.adapters[name]
        del self.adapter_configs[name]
        if self.active_adapter == name:
            self.active_adapter = self.adapter_names[0]

    # ---- parameters --------------------------------------------------------------------------
    def trainable_parameters(self) -> List[nn.Parameter]:
        """Every trainable tensor (of all adapters)."""
        seen, out = set(), []
        for p in self.parameters():
            if p.requires_grad and id(p) not in seen:
                seen.add(id(p))
                out.append(p)
        return out

    def num_trainable_parameters(self) -> int:
        return sum(p.numel() for p in self.trainable_parameters())

    def param_groups(self, **kwargs) -> List[dict]:
        raise NotImplementedError

    # ---- save and load -----------------------------------------------------------------------
    def _adapter_tensors(self, name: str) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    def save_pretrained(self, directory: Union[str, Path], adapter_name: Optional[str] = None) -> None:
        """Write adapters: ``fastprompt_config.json`` and ``fastprompt_weights.safetensors``.

        With ``adapter_name``, that adapter in ``directory``; else the active adapter in
        ``directory`` and every other adapter in ``directory/<name>``."""
        if adapter_name is not None:
            self._check_adapter(adapter_name)
            targets = [(adapter_name, Path(directory))]
        else:
            targets = [(self.active_adapter, Path(directory))]
            targets += [(n, Path(directory) / n) for n in self.adapter_names if n != self.active_adapter]
        for name, folder in targets:
            self._write_adapter(name, folder)

    def _write_adapter(self, name: str, folder: Path) -> None:
        """Under FSDP2 every rank calls this: sharded tensors are gathered and rank 0 writes."""
        from safetensors.torch import save_file

        from fastprompt.methods._sharded import gather_for_save

        state, writer = gather_for_save(self._adapter_tensors(name))
        if not writer:
            return
        folder.mkdir(parents=True, exist_ok=True)
        cfg = self.adapter_configs[name]
        state = {k: t.detach().contiguous().cpu() for k, t in state.items()}
        text = json.dumps(cfg.to_dict(), indent=2)
        _atomic_write(folder / WEIGHTS_NAME,
                      lambda p: save_file(state, p, metadata={"format": "pt", "method": cfg.method}))
        _atomic_write(folder / CONFIG_NAME, lambda p: Path(p).write_text(text))

    def _read_own(self, directory, argument: str = "directory") -> Tuple[AdapterConfig, Path]:
        cfg, weights_path = read_checkpoint(directory, argument)
        if type(cfg) is not self.config_class:
            raise ValueError(f"{argument}: {directory} holds a {cfg.method!r} adapter; this model is "
                             f"{self.config_class.method!r} (load it with {METHODS[cfg.method].__name__})")
        self._check_backbone(cfg, self.base_model, directory)
        return cfg, weights_path

    @classmethod
    def _check_backbone(cls, cfg: AdapterConfig, model: nn.Module, source) -> None:
        """ValueError when ``cfg`` was trained for another backbone than ``model``."""

    def _copy_state(self, name: str, state: Dict[str, torch.Tensor], source) -> None:
        """Copy a checkpoint's tensors into adapter ``name`` after checking names and shapes."""
        own = self._adapter_tensors(name)
        missing, unexpected = sorted(set(own) - set(state)), sorted(set(state) - set(own))
        if missing or unexpected:
            raise ValueError(f"{source}: the weights do not match a {self.adapter_configs[name].method!r} adapter "
                             f"of this config (missing {missing[:6]}, unexpected {unexpected[:6]})")
        for key, tensor in own.items():
            if tuple(state[key].shape) != tuple(tensor.shape):
                raise ValueError(f"{source}: tensor {key!r} has shape {tuple(state[key].shape)}, expected "
                                 f"{tuple(tensor.shape)}")
        with torch.no_grad():
            for key, tensor in own.items():
                tensor.copy_(state[key].to(tensor.device, tensor.dtype))

    @staticmethod
    def _config_for_loading(cfg: AdapterConfig) -> dict:
        """Config fields (hyper-parameters) of a freshly built adapter that a checkpoint then fills."""
        return cfg.hyper_parameters()

    def load_adapter(self, directory: Union[str, Path], adapter_name: str = "default") -> nn.Module:
        """Load an adapter written by :meth:`save_pretrained` as ``adapter_name`` (replacing one of
        that name). AdapterNotFoundError (a FileNotFoundError and ValueError) for a missing folder or
        file; ValueError for an adapter of another method or backbone, or tensors that do not match."""
        from safetensors.torch import load_file

        cfg, weights_path = self._read_own(directory)
        replaced = self.adapters[adapter_name] if adapter_name in self.adapters else None
        replaced_cfg = self.adapter_configs.get(adapter_name)
        if replaced is not None:
            del self.adapters[adapter_name]
            del self.adapter_configs[adapter_name]
        try:
            module = self.add_adapter(adapter_name, **self._config_for_loading(cfg))
            self._copy_state(adapter_name, load_file(str(weights_path)), weights_path)
        except BaseException:
            if adapter_name in self.adapters:
                del self.adapters[adapter_name]
                del self.adapter_configs[adapter_name]
            if replaced is not None:
                self._register(adapter_name, replaced_cfg, replaced)
            raise
        self._after_load(adapter_name, cfg)
        return module

    def _after_load(self, name: str, cfg: AdapterConfig) -> None:
        """Hook: restore config fields that the checkpoint records but building did not use."""

    def load_weights(self, directory: Union[str, Path], adapter_name: Optional[str] = None) -> None:
        """Load the tensors written by :meth:`save_pretrained` into an existing adapter in place
        (default: the active one), e.g. to resume training; its config must match the saved one."""
        from safetensors.torch import load_file

        name = adapter_name or self.active_adapter
        self._check_adapter(name)
        cfg, weights_path = self._read_own(directory)
        self._check_same_config(self.adapter_configs[name], cfg, directory)
        self._copy_state(name, load_file(str(weights_path)), weights_path)

    def _check_same_config(self, mine: AdapterConfig, saved: AdapterConfig, source) -> None:
        """ValueError when a checkpoint's config cannot fill this adapter in place."""

    def load_checkpoint(self, directory: Union[str, Path], argument: str = "resume_from_checkpoint") -> None:
        """Load a folder written by :meth:`save_pretrained` (all adapters) into the adapters in
        place: the active adapter from ``directory``, the others from their sub-folders."""
        directory = Path(directory)
        checkpoint_files(directory, argument)
        for name in self.adapter_names:
            folder = directory if name == self.active_adapter else directory / name
            if folder == directory or (folder / CONFIG_NAME).is_file():
                self.load_weights(folder, name)

    @classmethod
    def from_pretrained(cls, model: nn.Module, directory: Union[str, Path], adapter_name: str = "default",
                        **kwargs) -> "AdapterModel":
        """Wrap ``model`` and load the adapter saved in ``directory`` (called on a base class, the
        class of the saved method)."""
        from safetensors.torch import load_file

        cfg, weights_path = read_checkpoint(directory)
        klass = METHODS[cfg.method]
        if not issubclass(klass, cls):
            raise ValueError(f"directory: {directory} holds a {cfg.method!r} adapter, which {cls.__name__} cannot "
                             f"load (use {klass.__name__}.from_pretrained)")
        klass._check_backbone(cfg, model, directory)
        wrapper = klass(model, klass.config_class(**klass._config_for_loading(cfg)), adapter_name=adapter_name,
                        **kwargs)
        wrapper._copy_state(adapter_name, load_file(str(weights_path)), weights_path)
        wrapper._after_load(adapter_name, cfg)
        return wrapper
