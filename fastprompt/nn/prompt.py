"""Soft-prompt modules: a plain soft prompt, the DePT low-rank embedding offset, and the EPT prompt
(short prompt + low-rank knowledge, prompt fusion, multi-space projection with gating)."""
import math
from typing import Optional

import torch
from torch import nn


class SoftPrompt(nn.Module):
    """L learnable soft tokens of width d.

    Args:
        num_tokens: L.
        dim: d, the embedding width of the backbone.
        init_std: standard deviation of the random normal initialisation.

    ``forward(batch_size)`` returns the prompt expanded to (batch_size, L, d) (a view of
    :attr:`weight`, no copy); ``forward()`` returns (L, d).
    """

    def __init__(self, num_tokens: int, dim: int, init_std: float = 0.02, device=None, dtype=None):
        super().__init__()
        for name, value in (("num_tokens", num_tokens), ("dim", dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.num_tokens, self.dim = num_tokens, dim
        self.weight = nn.Parameter(torch.empty(num_tokens, dim, device=device, dtype=dtype))
        with torch.no_grad():
            self.weight.normal_(0.0, init_std)

    @classmethod
    def from_tensor(cls, tensor: torch.Tensor, requires_grad: bool = True) -> "SoftPrompt":
        """A soft prompt whose weight is a copy of ``tensor`` (L, d) (any device, dtype, strides;
        a leaf, a view, or a tensor that requires grad: it is detached and copied)."""
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensor: expected a torch.Tensor, got {type(tensor).__name__}")
        if tensor.dim() != 2 or tensor.shape[0] < 1 or tensor.shape[1] < 1:
            raise ValueError(f"tensor: expected a non-empty (num_tokens, dim) tensor, got shape {tuple(tensor.shape)}")
        if not tensor.is_floating_point():
            raise ValueError(f"tensor: expected a floating-point tensor, got {tensor.dtype}")
        prompt = cls(int(tensor.shape[0]), int(tensor.shape[1]), device=tensor.device, dtype=tensor.dtype)
        with torch.no_grad():
            prompt.weight.copy_(tensor.detach())
        prompt.weight.requires_grad_(requires_grad)
        return prompt

    def forward(self, batch_size: Optional[int] = None) -> torch.Tensor:
        if batch_size is None:
            return self.weight
        if not isinstance(batch_size, int) or batch_size < 0:
            raise ValueError(f"batch_size: expected a non-negative int, got {batch_size!r}")
        return self.weight.unsqueeze(0).expand(batch_size, -1, -1)

    def extra_repr(self) -> str:
        return f"num_tokens={self.num_tokens}, dim={self.dim}"


class LowRankOffset(nn.Module):
    """DePT's position-wise offset of the input embeddings: ``offset = A @ B``, A (max_len, r),
    B (r, d). Position t of an input gets ``offset[t]`` added to its (frozen) token embedding.

    A is initialised with Kaiming-uniform rows (like LoRA's A), B with zeros, so the offset starts
    at exactly zero and the backbone's embeddings are unchanged at step 0.

    ``forward(embeds)`` adds the offset to embeds (..., T, d) with T <= max_len;
    :meth:`offset` returns the (T, d) offset itself.
    """

    def __init__(self, max_len: int, rank: int, dim: int, device=None, dtype=None):
        super().__init__()
        for name, value in (("max_len", max_len), ("rank", rank), ("dim", dim)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        self.max_len, self.rank, self.dim = max_len, rank, dim
        self.A = nn.Parameter(torch.empty(max_len, rank, device=device, dtype=dtype))
        self.B = nn.Parameter(torch.zeros(rank, dim, device=device, dtype=dtype))
        with torch.no_grad():
            nn.init.kaiming_uniform_(self.A, a=math.sqrt(5))

    def offset(self, length: Optional[int] = None) -> torch.Tensor:
        """The first ``length`` rows of A @ B (all max_len rows by default)."""
        if length is None:
            length = self.max_len
        if length > self.max_len:
            raise ValueError(f"input_ids: inputs of {length} tokens are longer than the low-rank offset's "
                             f"max_len ({self.max_len}); truncate them or use a larger max_len")
        return self.A[:length] @ self.B

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        if embeds.dim() < 2 or embeds.shape[-1] != self.dim:
            raise ValueError(f"embeds: expected shape (..., tokens, {self.dim}), got {tuple(embeds.shape)}")
        return embeds + self.offset(embeds.shape[-2]).to(embeds.dtype)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, rank={self.rank}, dim={self.dim}"


class DePTPrompt(nn.Module):
    """DePT's trainable parts: a short :class:`SoftPrompt` (m, d) and a :class:`LowRankOffset`
    A (max_len, r) @ B (r, d) of the input embeddings.

    ``forward()`` returns the short prompt (m, d); :meth:`offset` adds the position-wise offset
    to input embeddings (..., T, d), T <= max_len.
    """

    def __init__(self, num_tokens: int, max_len: int, rank: int, dim: int, device=None, dtype=None):
        super().__init__()
        self.prompt = SoftPrompt(num_tokens, dim, device=device, dtype=dtype)
        self.offset = LowRankOffset(max_len, rank, dim, device=device, dtype=dtype)

    def forward(self) -> torch.Tensor:
        return self.prompt.weight
