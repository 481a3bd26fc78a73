"""Multi-tenant serving of task prompt vectors: one prompt per row of a batch, in one op call."""
from typing import Dict, List, Optional, Sequence, Union

import torch
from torch import nn

from fastprompt._dtypes import accumulation_dtype
from fastprompt.vectors.init import vector_bank


class PromptBank(nn.Module):
    """A bank of T task prompt vectors (T, L, d) plus an optional base prompt (L, d).

    ``forward(mix)`` returns the prompts (B, L, d), ``base + sum_t w[b, t] tau_t``, for a whole
    batch in ONE :func:`fastprompt.combine` call. ``mix`` is, per row:

    * a float tensor (B, T) of weights (or (T,) for one prompt (L, d));
    * an integer tensor (B,) or a list of ints: index i < T is task i alone (weight 1), index
      T + j is the j-th registered mix;
    * a list of names: a registered mix or a task name.

    Args:
        vectors: list of :class:`TaskPromptVector` or a tensor (T, L, d); stored as a buffer.
        base: prompt added to every mix (e.g. the init all vectors share); buffer.
        names: one name per vector (default: the vectors' task names, else "task{i}").
    """

    def __init__(self, vectors, base: Optional[torch.Tensor] = None, names: Optional[Sequence[str]] = None):
        super().__init__()
        bank = vector_bank(vectors).detach()
        count = bank.shape[0]
        if names is None:
            if isinstance(vectors, torch.Tensor):
                names = [f"task{i}" for i in range(count)]
            else:
                names = [v.task if v.task is not None else f"task{i}" for i, v in enumerate(vectors)]
        names = [str(n) for n in names]
        if len(names) != count:
            raise ValueError(f"names: expected one name per vector ({count}), got {len(names)}")
        if len(set(names)) != count:
            raise ValueError(f"names: expected distinct names, got {names}")
        if base is not None:
            if not isinstance(base, torch.Tensor) or base.shape != bank.shape[1:]:
                got = tuple(base.shape) if isinstance(base, torch.Tensor) else type(base).__name__
                raise ValueError(f"base: expected a prompt of shape {tuple(bank.shape[1:])}, got {got}")
            base = base.detach().to(device=bank.device, dtype=bank.dtype).clone()
        self.register_buffer("bank", bank.clone())
        self.register_buffer("base", base)
        # rows of the lookup table: one-hot rows of the tasks, then the registered mixes
        # (float32, float64 for a float64 bank: the op accumulates in that type)
        self.register_buffer("table", torch.eye(count, dtype=accumulation_dtype(bank.dtype), device=bank.device))
        self.task_names: List[str] = names
        self.mix_names: List[str] = []

    # ---- bookkeeping -------------------------------------------------------------------------
    @property
    def num_tasks(self) -> int:
        return self.bank.shape[0]

    @property
    def prompt_shape(self):
        return tuple(self.bank.shape[1:])

    @property
    def names(self) -> List[str]:
        """Names of the table rows: the tasks, then the registered mixes."""
        return self.task_names + self.mix_names

    def mixes(self) -> Dict[str, torch.Tensor]:
        t = self.num_tasks
        return {name: self.table[t + i] for i, name in enumerate(self.mix_names)}

    def register_mix(self, name: str, weights: Union[torch.Tensor, Sequence[float], Dict[str, float]]) -> int:
        """Store a named mix: weights (T,) or {task name: weight} (others 0). Returns its index."""
        if not isinstance(name, str) or not name:
            raise ValueError(f"name: expected a non-empty string, got {name!r}")
        if name in self.names:
            raise ValueError(f"name: {name!r} is already a task or mix of this bank")
        t = self.num_tasks
        if isinstance(weights, dict):
            unknown = [k for k in weights if k not in self.task_names]
            if unknown:
                raise ValueError(f"weights: unknown tasks {unknown}; tasks are {self.task_names}")
            row = torch.zeros(t, dtype=self.table.dtype)
            for k, v in weights.items():
                row[self.task_names.index(k)] = float(v)
        else:
            row = torch.as_tensor(weights, dtype=self.table.dtype)
            if row.dim() != 1 or row.shape[0] != t:
                raise ValueError(f"weights: expected one weight per task ({t}), got shape {tuple(row.shape)}")
        if not torch.isfinite(row).all():
            raise ValueError("weights: expected finite weights")
        self.table = torch.cat([self.table, row.to(self.table).unsqueeze(0)])
        self.mix_names.append(name)
        return t + len(self.mix_names) - 1

    def index(self, key: Union[str, int]) -> int:
        if isinstance(key, str):
            if key in self.mix_names:  # a registered mix wins over a task of the same name (never both)
                return self.num_tasks + self.mix_names.index(key)
            if key in self.task_names:
                return self.task_names.index(key)
            raise ValueError(f"mix: unknown tenant {key!r}; known: {self.names}")
        if isinstance(key, bool) or not isinstance(key, int):
            raise ValueError(f"mix: expected names or indices, got {key!r}")
        if not 0 <= key < self.table.shape[0]:
            raise ValueError(f"mix: index {key} out of range [0, {self.table.shape[0]})")
        return key

    def weights_for(self, mix) -> torch.Tensor:
        """The (B, T) (or (T,)) weights ``mix`` stands for."""
        t = self.num_tasks
        if isinstance(mix, torch.Tensor):
            if mix.is_floating_point():
                if mix.dim() not in (1, 2) or mix.shape[-1] != t:
                    raise ValueError(f"mix: expected weights (B, {t}) or ({t},), got shape {tuple(mix.shape)}")
                return mix.to(device=self.bank.device, dtype=accumulation_dtype(mix.dtype))
            if mix.dtype == torch.bool or mix.dim() != 1:
                raise ValueError(f"mix: expected an integer tensor (B,) of tenant indices, got {mix.dtype} "
                                 f"of shape {tuple(mix.shape)}")
            n = self.table.shape[0]
            if mix.numel() and not bool(((mix >= 0) & (mix < n)).all()):  # a host sync for device tensors
                raise ValueError(f"mix: tenant indices must lie in [0, {n}), got {mix.tolist()}")
            return self.table.index_select(0, mix.to(device=self.table.device, dtype=torch.long))
        if isinstance(mix, (str, int)):
            raise ValueError("mix: expected one entry per row (a list, or a tensor (B,) / (B, T))")
        rows = [self.index(k) for k in mix]
        idx = torch.tensor(rows, dtype=torch.long).to(self.table.device, non_blocking=True)
        return self.table.index_select(0, idx)

    def forward(self, mix) -> torch.Tensor:
        import fastprompt

        return fastprompt.combine(self.bank, self.weights_for(mix), base=self.base)

    # names and the mix table travel with state_dict
    def get_extra_state(self):
        return {"task_names": list(self.task_names), "mix_names": list(self.mix_names)}

    def set_extra_state(self, state):
        self.task_names = list(state["task_names"])
        self.mix_names = list(state["mix_names"])

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        key = prefix + "table"
        if key in state_dict and state_dict[key].shape != self.table.shape:
            self.table = torch.empty_like(state_dict[key], device=self.table.device, dtype=self.table.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"tasks={self.task_names}, mixes={self.mix_names}, prompt_shape={self.prompt_shape}"
