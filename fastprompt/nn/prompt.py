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

    def rows(self, start: int, stop: int) -> torch.Tensor:
        """Rows start..stop-1 of A @ B (the offset of positions start..stop-1)."""
        if stop > self.max_len:
            raise ValueError(f"input_ids: position {stop - 1} is beyond the low-rank offset's max_len "
                             f"({self.max_len}); shorten the input or the generation, or use a larger max_len")
        return self.A[start:stop] @ self.B

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        if embeds.dim() < 2 or embeds.shape[-1] != self.dim:
            raise ValueError(f"embeds: expected shape (..., tokens, {self.dim}), got {tuple(embeds.shape)}")
        return embeds + self.offset(embeds.shape[-2]).to(embeds.dtype)

    def extra_repr(self) -> str:
        return f"max_len={self.max_len}, rank={self.rank}, dim={self.dim}"


class DePTPrompt(nn.Module):
    """DePT's trainable parts: a short :class:`SoftPrompt` (m, d) and a :class:`LowRankOffset`
    A (max_len, r) @ B (r, d) of the input embeddings.

    ``forward()`` returns the short prompt (m, d); ``offset(embeds)`` adds the position-wise offset
    to input embeddings (..., T, d), T <= max_len.
    """

    def __init__(self, num_tokens: int, max_len: int, rank: int, dim: int, device=None, dtype=None):
        super().__init__()
        self.prompt = SoftPrompt(num_tokens, dim, device=device, dtype=dtype)
        self.offset = LowRankOffset(max_len, rank, dim, device=device, dtype=dtype)

    def forward(self) -> torch.Tensor:
        return self.prompt.weight


class EPTPrompt(nn.Module):
    r"""The prompt of EPT (efficient prompt tuning by multi-space projection and prompt fusion,
    arXiv 2405.11464), as implemented here (no official code exists; this is the exact
    formulation):

    Trainable parts: a short prompt :math:`P \in R^{m \times d}`, a low-rank pair
    :math:`A \in R^{\ell \times r}`, :math:`B \in R^{r \times d}` (:math:`\ell` = max_len,
    B zero-initialised), the multi-space projection :math:`W_k \in R^{d \times d}`,
    :math:`b_k \in R^d` (k = 1..N) and its gate (shared logits :math:`c \in R^N`, or per row a
    linear gating network :math:`W_g \in R^{d \times N}`, :math:`b_g \in R^N`).

    1. Low-rank knowledge (DePT): :math:`K = A B \in R^{\ell \times d}`. The method also adds
       :math:`K_t` to the frozen embedding of input token t (:attr:`offset`, a LowRankOffset).
    2. Prompt fusion: the short prompt attends, as queries, over the knowledge rows
       :math:`M = [P; K] \in R^{(m + \ell) \times d}` (the prompt itself and the low-rank
       knowledge), single head, no projections, scaled dot product, residual:
       :math:`F = P + \mathrm{softmax}(P M^\top / \sqrt{d})\, M`.
    3. Multi-space projection with gating, residual:
       :math:`Z = F + \sum_{k=1}^{N} g_k \odot (F W_k + b_k)`, with
       :math:`g = \mathrm{softmax}(c)` (gate "shared") or, per soft token i,
       :math:`g_i = \mathrm{softmax}(F_i W_g + b_g)` (gate "per_row").
    4. Z (m, d) is the reconstructed prompt placed before the (offset) input embeddings.

    Initialisation: P as configured by the method (random / vocabulary / text / tensor), A
    Kaiming-uniform, B = 0 (so K = 0 at the start), :math:`W_k \sim N(0, s^2 / d)` with
    s = ``projection_init_scale`` and :math:`b_k = 0` (the projection branch starts as a gentle
    perturbation of F), shared gate logits 0 (uniform), gating network as nn.Linear.

    The fusion is computed without forming K: :math:`P K^\top = (P B^\top) A^\top` and
    :math:`\mathrm{softmax}(\cdot)_K K = (\mathrm{softmax}(\cdot)_K A) B`, i.e.
    O(m r (d + l)) instead of O(m l d); the projection runs :func:`fastprompt.multispace_project`.
    The pure-PyTorch reference is :func:`fastprompt.reference.ept_prompt_ref`.

    Args:
        num_tokens: m. max_len: l. rank: r. dim: d. num_spaces: N.
        gate: "per_row" or "shared" (see :class:`fastprompt.nn.MultiSpaceProjection`).
        projection_init_scale: s above.
        fusion: step 2; ``False`` skips it (F = P), an ablation.

    ``forward()`` returns Z (m, d); ``offset(embeds)`` adds the low-rank offset to input embeddings.
    """

    def __init__(self, num_tokens: int, max_len: int, rank: int, dim: int, num_spaces: int = 4,
                 gate: str = "per_row", projection_init_scale: float = 0.1, fusion: bool = True, device=None,
                 dtype=None):
        super().__init__()
        from fastprompt.nn.multispace_project import MultiSpaceProjection

        self.fusion = bool(fusion)
        self.prompt = SoftPrompt(num_tokens, dim, device=device, dtype=dtype)
        self.offset = LowRankOffset(max_len, rank, dim, device=device, dtype=dtype)
        self.projection = MultiSpaceProjection(dim, dim, num_spaces, gate=gate, bias=True, device=device, dtype=dtype)
        self.projection_init_scale = float(projection_init_scale)
        with torch.no_grad():
            self.projection.weight.normal_(0.0, self.projection_init_scale / math.sqrt(dim))
            self.projection.bias.zero_()

    @property
    def num_spaces(self) -> int:
        return self.projection.num_spaces

    @property
    def gate(self) -> str:
        return self.projection.gate

    def fuse(self) -> torch.Tensor:
        """F = P + softmax(P [P; A B]^T / sqrt(d)) [P; A B], without forming A B (P without fusion)."""
        if not self.fusion:
            return self.prompt.weight
        return ept_fuse(self.prompt.weight, self.offset.A, self.offset.B)

    def forward(self) -> torch.Tensor:
        proj = self.projection
        gate_net = proj.gate_net
        return ept_prompt(self.prompt.weight, self.offset.A, self.offset.B, proj.weight, proj.bias,
                          proj.gate_logits, gate_net.weight if gate_net is not None else None,
                          gate_net.bias if gate_net is not None else None, fusion=self.fusion)

    def gate_weights(self) -> torch.Tensor:
        """The mix of the N spaces, (N,): softmax(c) for a shared gate, else the mean over the soft
        tokens of each token's mix."""
        with torch.no_grad():
            proj = self.projection
            if proj.gate_net is None:
                return torch.softmax(proj.gate_logits, dim=0)
            return torch.softmax(proj.gate_net(self.fuse()), dim=-1).mean(0)

    def extra_repr(self) -> str:
        return f"projection_init_scale={self.projection_init_scale}, fusion={self.fusion}"


def ept_fuse(prompt: torch.Tensor, A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
    """EPT's prompt fusion F = P + softmax(P [P; A B]^T / sqrt(d)) [P; A B] without forming A B:
    P (A B)^T = (P B^T) A^T and softmax(.)_K (A B) = (softmax(.)_K A) B."""
    m = prompt.shape[0]
    scale = 1.0 / math.sqrt(prompt.shape[1])
    scores = torch.cat([prompt @ prompt.t(), (prompt @ B.t()) @ A.t()], dim=1) * scale  # (m, m + l)
    attn = torch.softmax(scores, dim=1)
    return prompt + attn[:, :m] @ prompt + (attn[:, m:] @ A) @ B


def ept_prompt(prompt, A, B, weight, bias=None, gate_logits=None, gate_weight=None, gate_bias=None,
               fusion: bool = True) -> torch.Tensor:
    """The EPT prompt Z (m, d) from its parameters (what :class:`EPTPrompt` computes; same
    arguments as :func:`fastprompt.reference.ept_prompt_ref`): fusion (F = P with
    ``fusion=False``), then Z = F + multispace_project(F, weight, bias, gate) with the gate shared
    (``gate_logits`` (N,)), per row (``gate_weight`` (N, d), ``gate_bias`` (N,)), or uniform."""
    from fastprompt.ops.multispace_project import multispace_project

    if gate_weight is not None and gate_logits is not None:
        raise ValueError("gate_logits, gate_weight: give a shared gate or a gating network, not both")
    fused = ept_fuse(prompt, A, B) if fusion else prompt
    if gate_weight is not None:
        gate_logits = torch.nn.functional.linear(fused, gate_weight, gate_bias)
    return fused + multispace_project(fused, weight, bias, gate_logits)
