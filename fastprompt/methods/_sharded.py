"""Saving parameters that FSDP2 (``torch.distributed.fsdp.fully_shard``) has sharded."""
from typing import Dict, Tuple

import torch


def gather_for_save(state: Dict[str, torch.Tensor]) -> Tuple[Dict[str, torch.Tensor], bool]:
    """``state`` with every sharded tensor (a DTensor) replaced by its whole value, and whether
    this process writes the files.

    Gathering is a collective: with sharded tensors every rank must call the save method, and
    only rank 0 writes. Without sharded tensors nothing is communicated and every caller writes
    (DDP replicas hold the whole tensors: save on rank 0 only, as usual)."""
    sharded = False
    out = {}
    for key, tensor in state.items():
        full = getattr(tensor, "full_tensor", None)
        if callable(full):
            tensor, sharded = full(), True
        out[key] = tensor
    writer = True
    if sharded and torch.distributed.is_available() and torch.distributed.is_initialized():
        writer = torch.distributed.get_rank() == 0
    return out, writer
