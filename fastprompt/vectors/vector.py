"""Task prompt vectors (arXiv 2408.01119): tau = P_tuned - P_init for a soft prompt (L, d).

A :class:`TaskPromptVector` holds tau and where it came from (task, base model, init seed).
Vectors of the same backbone add, subtract, scale and merge; a sum of vectors added to a random
init is a prompt-tuning initialisation for a new, similar task (:mod:`fastprompt.vectors.init`).
"""
import json
import numbers
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Sequence, Union

import torch

from fastprompt._dtypes import accumulation_dtype

from fastprompt.reference.task_arithmetic import (MERGE_METHODS, SIGN_METHODS, check_density,  # noqa: F401
                                                 check_merge_method, check_sign)
from fastprompt.vectors import checkpoints
FORMAT_NAME = "fastprompt.task_prompt_vector"
FORMAT_VERSION = 1
TENSOR_KEY = "task_vector"

PathLike = Union[str, Path]


def _json_field(name: str, value):
    try:
        return json.dumps(value)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: metadata must be JSON-serialisable ({exc})") from None


class TaskPromptVector:
    """A task prompt vector tau (L, d) with its metadata.

    Args:
        tau: the vector, a floating tensor of shape (L, d) (for PEFT encoder-decoder adapters
            L counts the virtual tokens of every transformer submodule).
        task: name of the task it was tuned on.
        base_model: the backbone the prompt was tuned for (a name or path); arithmetic between
            vectors of two different backbones raises ValueError.
        init_seed: the seed of the random init the prompt started from, if known.
        extra: further JSON-serialisable metadata, kept through save / load.

    Arithmetic: ``a + b``, ``a - b``, ``c * a``, ``a * c``, ``a / c``, ``-a`` and ``sum([a, b, c])``.
    """

    __slots__ = ("tau", "task", "base_model", "init_seed", "extra")

    def __init__(self, tau: torch.Tensor, task: Optional[str] = None, base_model: Optional[str] = None,
                 init_seed: Optional[int] = None, extra: Optional[Dict[str, Any]] = None):
        if not isinstance(tau, torch.Tensor):
            raise TypeError(f"tau: expected a torch.Tensor, got {type(tau).__name__}")
        if tau.dim() != 2:
            raise ValueError(f"tau: expected a soft-prompt shaped tensor (L, d), got shape {tuple(tau.shape)}")
        if not tau.is_floating_point():
            raise ValueError(f"tau: expected a floating tensor, got {tau.dtype}")
        if init_seed is not None and (isinstance(init_seed, bool) or not isinstance(init_seed, numbers.Integral)):
            raise ValueError(f"init_seed: expected an int or None, got {init_seed!r}")
        self.tau = tau
        self.task = task
        self.base_model = base_model
        self.init_seed = None if init_seed is None else int(init_seed)
        self.extra = dict(extra or {})

    # ---- constructors ------------------------------------------------------------------------
    @classmethod
    def from_tensors(cls, tuned: torch.Tensor, init: torch.Tensor, **metadata) -> "TaskPromptVector":
        """tau = tuned - init (both (L, d); the result has tuned's dtype and device)."""
        for name, t in (("tuned", tuned), ("init", init)):
            if not isinstance(t, torch.Tensor):
                raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
        if tuned.dim() != 2:
            raise ValueError(f"tuned: expected a soft prompt (L, d), got shape {tuple(tuned.shape)}")
        if init.shape != tuned.shape:
            raise ValueError(f"init: expected the shape of the tuned prompt {tuple(tuned.shape)}, "
                             f"got {tuple(init.shape)}")
        tuned = tuned.detach()
        return cls(tuned - init.detach().to(device=tuned.device, dtype=tuned.dtype), **metadata)

    @classmethod
    def from_checkpoint(cls, path: PathLike, init: Union[torch.Tensor, PathLike, None] = None,
                        init_seed: Optional[int] = None, *, model=None, init_std: Optional[float] = None,
                        task: Optional[str] = None, base_model: Optional[str] = None,
                        device=None) -> "TaskPromptVector":
        """The vector of a tuned prompt-tuning checkpoint.

        ``path``: a fastprompt prompt-tuning directory (``prompt_config.json`` +
        ``prompt_weights.safetensors``), a PEFT prompt-tuning adapter directory
        (``adapter_config.json`` + ``adapter_model.safetensors`` or ``.bin``), or a
        ``.safetensors`` file holding ``prompt_embeddings``.

        The init it started from, one of:

        * ``init``: the tensor, or the path of a checkpoint saved before training;
        * ``init_seed`` (or, for fastprompt checkpoints, the seed their config records): the init
          is rebuilt as fastprompt's prompt tuning draws it (:func:`fastprompt.vectors.init.
          regenerate_init`): a random init needs ``model`` (the backbone: the std of its word
          embeddings) or ``init_std``; a vocabulary init needs ``model``. For PEFT adapters and
          plain files a seed means :func:`fastprompt.vectors.random_init` with ``init_std``
          (default 1; PEFT itself draws its init from torch's global generator, so pass the init).
        """
        prompt = checkpoints.read_prompt(path, device=device)
        meta = prompt.metadata
        length, dim = prompt.weight.shape
        if init is None:
            kind = "random"
            if prompt.format == "fastprompt":
                kind = str(meta.get("config", {}).get("init", "random"))
                if init_seed is None:
                    init_seed = meta.get("init_seed")
            elif init_std is None and init_seed is not None:
                init_std = 1.0
            if init_seed is None:
                raise ValueError(f"init: {path} records no init seed; pass init (a tensor or a checkpoint) "
                                 "or init_seed")
            from fastprompt.vectors.init import regenerate_init

            init_tensor = regenerate_init(length, dim, init_seed, kind=kind, model=model, std=init_std)
        elif isinstance(init, torch.Tensor):
            init_tensor = init
        elif isinstance(init, (str, Path)):
            start = checkpoints.read_prompt(init, device=device)
            init_tensor = start.weight
            if init_seed is None:
                init_seed = start.metadata.get("init_seed")
        else:
            raise TypeError(f"init: expected a tensor, a checkpoint path or None, got {type(init).__name__}")
        if init_tensor.shape != prompt.weight.shape:
            raise ValueError(f"init: expected the shape of the prompt in {path} {tuple(prompt.weight.shape)}, "
                             f"got {tuple(init_tensor.shape)}")
        return cls.from_tensors(prompt.weight, init_tensor, task=task if task is not None else meta.get("task"),
                                base_model=base_model if base_model is not None else meta.get("base_model"),
                                init_seed=init_seed)

    # ---- properties --------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.tau.shape

    @property
    def prompt_length(self) -> int:
        return int(self.tau.shape[0])

    @property
    def dim(self) -> int:
        return int(self.tau.shape[1])

    @property
    def device(self) -> torch.device:
        return self.tau.device

    @property
    def dtype(self) -> torch.dtype:
        return self.tau.dtype

    @property
    def metadata(self) -> Dict[str, Any]:
        return {"task": self.task, "base_model": self.base_model, "init_seed": self.init_seed,
                "prompt_length": self.prompt_length, **({"extra": self.extra} if self.extra else {})}

    def __repr__(self) -> str:
        return (f"TaskPromptVector(task={self.task!r}, base_model={self.base_model!r}, init_seed={self.init_seed}, "
                f"shape={tuple(self.tau.shape)}, dtype={self.tau.dtype}, device={self.tau.device})")

    def to(self, *args, **kwargs) -> "TaskPromptVector":
        return self._like(self.tau.to(*args, **kwargs))

    def clone(self) -> "TaskPromptVector":
        return self._like(self.tau.clone())

    def norm(self) -> float:
        return float(self.tau.double().norm())

    def _like(self, tau, task=None) -> "TaskPromptVector":
        return TaskPromptVector(tau, task=self.task if task is None else task, base_model=self.base_model,
                                init_seed=self.init_seed, extra=self.extra)

    # ---- arithmetic --------------------------------------------------------------------------
    def _check_compatible(self, other: "TaskPromptVector", name: str = "other") -> None:
        if other.tau.shape != self.tau.shape:
            raise ValueError(f"{name}: shape mismatch, {tuple(other.tau.shape)} vs {tuple(self.tau.shape)} "
                             f"(task {other.task!r} vs {self.task!r})")
        if self.base_model and other.base_model and self.base_model != other.base_model:
            raise ValueError(f"{name}: base model mismatch, {other.base_model!r} vs {self.base_model!r}; "
                             "task prompt vectors of different backbones do not combine")
        if other.tau.device != self.tau.device:
            raise ValueError(f"{name}: device mismatch, {other.tau.device} vs {self.tau.device}")

    def _combined(self, other: "TaskPromptVector", tau, task) -> "TaskPromptVector":
        seed = self.init_seed if self.init_seed == other.init_seed else None
        return TaskPromptVector(tau, task=task, base_model=self.base_model or other.base_model, init_seed=seed)

    def __add__(self, other):
        if isinstance(other, TaskPromptVector):
            self._check_compatible(other)
            return self._combined(other, self.tau + other.tau, f"{self.task} + {other.task}")
        if isinstance(other, numbers.Number) and other == 0:  # sum() starts from 0
            return self
        return NotImplemented

    def __radd__(self, other):
        if isinstance(other, numbers.Number) and other == 0:
            return self
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, TaskPromptVector):
            self._check_compatible(other)
            return self._combined(other, self.tau - other.tau, f"{self.task} - {other.task}")
        return NotImplemented

    def __neg__(self):
        return self._like(-self.tau, task=f"-{self.task}")

    def __mul__(self, coef):
        coef = _scalar(coef)
        if coef is None:
            return NotImplemented
        return self._like(self.tau * coef, task=f"{coef:g}*{self.task}")

    __rmul__ = __mul__

    def __truediv__(self, coef):
        coef = _scalar(coef)
        if coef is None:
            return NotImplemented
        if coef == 0:
            raise ZeroDivisionError("coef: division of a task prompt vector by zero")
        return self._like(self.tau / coef, task=f"{self.task}/{coef:g}")

    @staticmethod
    def sum(vectors: Iterable["TaskPromptVector"]) -> "TaskPromptVector":
        vectors = list(vectors)
        if not vectors:
            raise ValueError("vectors: expected at least one task prompt vector")
        return sum(vectors[1:], vectors[0])

    def apply(self, init: torch.Tensor, coef: float = 1.0) -> torch.Tensor:
        """init + coef * tau: a prompt (L, d) to start from (differentiable in init).

        The result has init's dtype and device."""
        _check_prompt("init", init, self.tau.shape)
        import fastprompt

        coef_t = torch.tensor([float(coef)], dtype=init.dtype, device=init.device)
        return fastprompt.combine(self.tau.to(device=init.device, dtype=init.dtype).unsqueeze(0), coef_t, base=init)

    # ---- merging -----------------------------------------------------------------------------
    @staticmethod
    def stack(vectors: Sequence["TaskPromptVector"], name: str = "vectors") -> torch.Tensor:
        """The bank (T, L, d) of compatible vectors (same shape, backbone, device and dtype)."""
        vectors = list(vectors)
        if not vectors:
            raise ValueError(f"{name}: expected at least one task prompt vector")
        for i, v in enumerate(vectors):
            if not isinstance(v, TaskPromptVector):
                raise TypeError(f"{name}[{i}]: expected a TaskPromptVector, got {type(v).__name__}")
            if i:
                vectors[0]._check_compatible(v, f"{name}[{i}]")
        dtype = vectors[0].tau.dtype
        return torch.stack([v.tau.to(dtype) for v in vectors])

    @classmethod
    def merge(cls, vectors: Sequence["TaskPromptVector"], method: str = "task_arithmetic",
              weights: Optional[Sequence[float]] = None, density: float = 1.0, sign: str = "total",
              seed: Optional[int] = None, task: Optional[str] = None) -> "TaskPromptVector":
        """Merge several vectors with :func:`fastprompt.merge` (task_arithmetic, magnitude_prune,
        ties, dare, dare_ties; the definitions of ``peft.utils.merge_utils``).

        weights: one per vector (default: 1 each); density in (0, 1]: the fraction kept by
        magnitude pruning / TIES trimming, or the keep probability of DARE; sign: "total" or
        "frequency" (TIES sign election); seed: DARE's random mask.
        """
        vectors = list(vectors)
        bank = cls.stack(vectors)
        check_merge_method(method)
        w = check_weights(weights, len(vectors), bank)
        density = check_density(density)
        check_sign(sign)
        import fastprompt

        with torch.no_grad():
            merged = fastprompt.merge(bank.detach(), method, weights=w, density=density, sign=sign, seed=seed)
        first = vectors[0]
        seeds = {v.init_seed for v in vectors}
        base = next((v.base_model for v in vectors if v.base_model), None)
        name = task if task is not None else f"{method}({', '.join(str(v.task) for v in vectors)})"
        return cls(merged, task=name, base_model=base, init_seed=first.init_seed if len(seeds) == 1 else None)

    # ---- comparison --------------------------------------------------------------------------
    def cosine_similarity(self, other: "TaskPromptVector") -> float:
        from fastprompt.vectors.compare import cosine_similarity

        return cosine_similarity(self, other)

    def l2_distance(self, other: "TaskPromptVector") -> float:
        from fastprompt.vectors.compare import l2_distance

        return l2_distance(self, other)

    def mean_abs_difference(self, other: "TaskPromptVector") -> float:
        from fastprompt.vectors.compare import mean_abs_difference

        return mean_abs_difference(self, other)

    # ---- save / load -------------------------------------------------------------------------
    def save(self, path: PathLike) -> None:
        """Write a ``.safetensors`` file: the tensor ``task_vector`` (L, d) and the metadata
        (task, base_model, init_seed, prompt_length, extra) as JSON strings in its header."""
        from safetensors.torch import save_file

        meta = {
            "format": "pt",
            "fastprompt.format": FORMAT_NAME,
            "fastprompt.version": str(FORMAT_VERSION),
            "task": _json_field("task", self.task),
            "base_model": _json_field("base_model", self.base_model),
            "init_seed": _json_field("init_seed", self.init_seed),
            "prompt_length": _json_field("prompt_length", self.prompt_length),
            "dim": _json_field("dim", self.dim),
            "extra": _json_field("extra", self.extra),
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_file({TENSOR_KEY: self.tau.detach().contiguous().cpu()}, str(path), metadata=meta)

    @classmethod
    def load(cls, path: PathLike, device=None) -> "TaskPromptVector":
        """Read a file written by :meth:`save`. Raises ValueError (naming ``path``) for a missing,
        truncated or corrupted file, or one that holds no task prompt vector."""
        tensors, meta = checkpoints.read_safetensors(path, device=device)
        if meta.get("fastprompt.format") != FORMAT_NAME or TENSOR_KEY not in tensors:
            raise ValueError(f"path: {path} is not a task prompt vector file (no {TENSOR_KEY!r} tensor with "
                             f"fastprompt.format={FORMAT_NAME!r} metadata)")
        fields = {}
        for key in ("task", "base_model", "init_seed", "prompt_length", "extra"):
            try:
                fields[key] = json.loads(meta[key]) if key in meta else None
            except json.JSONDecodeError:
                raise ValueError(f"path: corrupted metadata field {key!r} in {path}") from None
        tau = tensors[TENSOR_KEY]
        if tau.dim() != 2:
            raise ValueError(f"path: the vector in {path} has shape {tuple(tau.shape)}, expected (L, d)")
        if fields["prompt_length"] is not None and fields["prompt_length"] != tau.shape[0]:
            raise ValueError(f"path: {path} records prompt_length {fields['prompt_length']} but holds a vector "
                             f"of shape {tuple(tau.shape)}")
        return cls(tau, task=fields["task"], base_model=fields["base_model"], init_seed=fields["init_seed"],
                   extra=fields["extra"] or {})


def _scalar(coef):
    if isinstance(coef, bool):
        return None
    if isinstance(coef, numbers.Real):
        return float(coef)
    if isinstance(coef, torch.Tensor) and coef.numel() == 1 and coef.dim() == 0:
        return float(coef)
    return None


def _check_prompt(name: str, t, shape) -> None:
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(t).__name__}")
    if t.shape != shape:
        raise ValueError(f"{name}: expected a prompt of shape {tuple(shape)}, got {tuple(t.shape)}")
    if not t.is_floating_point():
        raise ValueError(f"{name}: expected a floating tensor, got {t.dtype}")


def check_weights(weights, count: int, like: torch.Tensor, name: str = "weights") -> Optional[torch.Tensor]:
    """weights as a (count,) tensor on like's device (None stays None)."""
    if weights is None:
        return None
    w = torch.as_tensor(weights).detach().to(dtype=accumulation_dtype(like))  # the op accumulates in it
    if w.dim() != 1 or w.shape[0] != count:
        raise ValueError(f"{name}: expected one weight per vector ({count}), got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all():
        raise ValueError(f"{name}: expected finite weights, got {w.tolist()}")
    return w.to(device=like.device)


def as_vector_list(vectors, name: str = "vectors") -> List[TaskPromptVector]:
    if isinstance(vectors, TaskPromptVector):
        return [vectors]
    vectors = list(vectors)
    for i, v in enumerate(vectors):
        if not isinstance(v, TaskPromptVector):
            raise TypeError(f"{name}[{i}]: expected a TaskPromptVector, got {type(v).__name__}")
    return vectors
