"""How soft prompts start: the random and vocabulary-sampled initialisations, drawn on the CPU
from a seeded generator (the same numbers on every device), so that a prompt's start can be
rebuilt from its seed later (task prompt vectors need ``P_init``)."""
from typing import Optional

import torch


def embedding_std(table: torch.Tensor) -> float:
    """Standard deviation of a word-embedding matrix (V, d): the scale of the random init."""
    return float(table.detach().float().std()) if table.numel() > 1 else 0.02


def _generator(seed: Optional[int]) -> Optional[torch.Generator]:
    return None if seed is None else torch.Generator(device="cpu").manual_seed(int(seed))


def random_prompt(num_tokens: int, dim: int, seed: Optional[int], std: float) -> torch.Tensor:
    """(num_tokens, dim) float32 on the CPU, N(0, std^2); ``seed`` None draws from torch's global
    generator."""
    return torch.randn(num_tokens, dim, generator=_generator(seed), dtype=torch.float32) * std


def vocab_prompt(table: torch.Tensor, num_tokens: int, seed: Optional[int]) -> torch.Tensor:
    """(num_tokens, d) float32 on the table's device: rows of the word-embedding matrix sampled
    uniformly with replacement."""
    ids = torch.randint(0, table.shape[0], (num_tokens,), generator=_generator(seed))
    return table.detach()[ids.to(table.device)].float()
