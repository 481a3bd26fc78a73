"""The one optimisation loop of the library (the demo, the task-vector experiments, the mixing
coefficients and the tests all step through it)."""
from typing import Callable, Iterable, List, Optional

import torch


def optimize(loss_of: Callable[[object], torch.Tensor], optimizer: torch.optim.Optimizer, items: Iterable,
             clip: Optional[float] = None, progress: bool = False, desc: str = "") -> List[float]:
    """One optimizer step per item: ``loss_of(item)``, backward, optional gradient-norm clipping
    to ``clip``, step. Returns the loss of each step (before the step). ``progress`` shows a tqdm
    bar with the running loss."""
    params = [p for group in optimizer.param_groups for p in group["params"]]
    if progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc=desc, dynamic_ncols=True, leave=True)
    losses = []
    for item in items:
        loss = loss_of(item)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        losses.append(float(loss.detach()))
        if progress:
            items.set_postfix(loss=f"{losses[-1]:.3f}")
    return losses


def make_optimizer(params, optimizer: str, lr: float) -> torch.optim.Optimizer:
    """``"adam"`` or ``"sgd"`` over ``params`` at ``lr``."""
    if optimizer == "adam":
        return torch.optim.Adam(params, lr=lr)
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr)
    raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
