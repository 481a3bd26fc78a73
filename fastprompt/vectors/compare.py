"""Comparing task prompt vectors: cosine similarity, L2 distance, mean absolute difference.

Pairwise tables across any list of vectors (:func:`pairwise`), across tasks (one table per init
seed, averaged over the seeds: do different tasks point the same way?) and across inits (one
table per task: is the vector of a task independent of the random init it started from?).
All values are computed in float64 and returned on the CPU.
"""
from collections import OrderedDict
from dataclasses import dataclass
from typing import Dict, List, Sequence

import torch

from fastprompt.vectors.vector import TaskPromptVector, as_vector_list

METRICS = ("cosine", "l2", "mean_abs")
_ALIASES = {"cosine": "cosine", "cos": "cosine", "l2": "l2", "euclidean": "l2", "mean_abs": "mean_abs",
            "mad": "mean_abs", "mean_abs_difference": "mean_abs"}


def _metric(metric: str) -> str:
    if metric not in _ALIASES:
        raise ValueError(f"metric: expected one of {', '.join(METRICS)}, got {metric!r}")
    return _ALIASES[metric]


def _flat(vectors: Sequence[TaskPromptVector], name="vectors") -> torch.Tensor:
    bank = TaskPromptVector.stack(vectors, name)
    return bank.reshape(bank.shape[0], -1).double()


def _matrix(x: torch.Tensor, metric: str) -> torch.Tensor:
    if metric == "cosine":
        n = x.norm(dim=1, keepdim=True)
        unit = x / n.clamp_min(torch.finfo(torch.float64).tiny)
        out = unit @ unit.T
        return out.clamp(-1.0, 1.0)
    if metric == "l2":
        return torch.cdist(x.unsqueeze(0), x.unsqueeze(0), compute_mode="donot_use_mm_for_euclid_dist")[0]
    rows = [(x[i:i + 1] - x).abs().mean(dim=1) for i in range(x.shape[0])]
    return torch.stack(rows)


def _pair(a: TaskPromptVector, b: TaskPromptVector, metric: str) -> float:
    return float(_matrix(_flat([a, b], "other"), metric)[0, 1])


def cosine_similarity(a: TaskPromptVector, b: TaskPromptVector) -> float:
    """cos(tau_a, tau_b) over all L * d entries (0 when either vector is zero)."""
    return _pair(a, b, "cosine")


def l2_distance(a: TaskPromptVector, b: TaskPromptVector) -> float:
    return _pair(a, b, "l2")


def mean_abs_difference(a: TaskPromptVector, b: TaskPromptVector) -> float:
    return _pair(a, b, "mean_abs")


@dataclass
class SimilarityTable:
    """A pairwise (N, N) table with its row / column labels."""

    matrix: torch.Tensor
    labels: List[str]
    metric: str

    def __getitem__(self, pair):
        i, j = (self.labels.index(p) if isinstance(p, str) else p for p in pair)
        return float(self.matrix[i, j])

    def off_diagonal_mean(self) -> float:
        n = self.matrix.shape[0]
        if n < 2:
            return float("nan")
        mask = ~torch.eye(n, dtype=torch.bool)
        values = self.matrix[mask]
        values = values[~values.isnan()]
        return float(values.mean()) if values.numel() else float("nan")

    def to_dict(self) -> Dict:
        return {"metric": self.metric, "labels": list(self.labels), "matrix": self.matrix.tolist()}

    def __str__(self) -> str:
        width = max([len(s) for s in self.labels] + [8])
        head = " " * width + " " + " ".join(f"{s:>{width}}" for s in self.labels)
        lines = [f"{self.metric}", head]
        for label, row in zip(self.labels, self.matrix.tolist()):
            lines.append(f"{label:>{width}} " + " ".join(f"{v:>{width}.4f}" for v in row))
        return "\n".join(lines)


def _label(v: TaskPromptVector, i: int) -> str:
    if v.task is None and v.init_seed is None:
        return str(i)
    return f"{v.task}" if v.init_seed is None else f"{v.task}@{v.init_seed}"


def pairwise(vectors: Sequence[TaskPromptVector], metric: str = "cosine") -> SimilarityTable:
    """The (N, N) table of ``metric`` between every pair of vectors."""
    metric = _metric(metric)
    vectors = as_vector_list(vectors)
    return SimilarityTable(_matrix(_flat(vectors), metric).cpu(), [_label(v, i) for i, v in enumerate(vectors)],
                           metric)


def _require(vectors, field: str):
    for i, v in enumerate(vectors):
        if getattr(v, field) is None:
            raise ValueError(f"vectors[{i}]: needs {field} metadata for this comparison")


def across_tasks(vectors: Sequence[TaskPromptVector], metric: str = "cosine") -> SimilarityTable:
    """Task x task table: for every init seed, the table between the vectors of that seed; the
    entries averaged over the seeds where both tasks have a vector (NaN where none does)."""
    metric = _metric(metric)
    vectors = as_vector_list(vectors)
    _require(vectors, "task")
    tasks = list(OrderedDict.fromkeys(v.task for v in vectors))
    groups: Dict = OrderedDict()
    for v in vectors:
        group = groups.setdefault(v.init_seed, OrderedDict())
        if v.task in group:
            raise ValueError(f"vectors: two vectors of task {v.task!r} with init seed {v.init_seed}")
        group[v.task] = v
    total = torch.zeros(len(tasks), len(tasks), dtype=torch.float64)
    count = torch.zeros_like(total)
    for group in groups.values():
        names = list(group)
        m = _matrix(_flat(list(group.values())), metric).cpu()
        idx = torch.tensor([tasks.index(n) for n in names])
        total[idx.unsqueeze(1), idx.unsqueeze(0)] += m
        count[idx.unsqueeze(1), idx.unsqueeze(0)] += 1
    return SimilarityTable(total / count, [str(t) for t in tasks], metric)


def across_inits(vectors: Sequence[TaskPromptVector], metric: str = "cosine") -> Dict[str, SimilarityTable]:
    """For every task, the init-seed x init-seed table between its vectors."""
    metric = _metric(metric)
    vectors = as_vector_list(vectors)
    _require(vectors, "task")
    _require(vectors, "init_seed")
    by_task: Dict = OrderedDict()
    for v in vectors:
        by_task.setdefault(v.task, []).append(v)
    out = OrderedDict()
    for task, group in by_task.items():
        seeds = [v.init_seed for v in group]
        if len(set(seeds)) != len(seeds):
            raise ValueError(f"vectors: task {task!r} has two vectors with the same init seed")
        out[str(task)] = SimilarityTable(_matrix(_flat(group), metric).cpu(), [str(s) for s in seeds], metric)
    return out
