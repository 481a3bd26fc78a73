"""EPT (arXiv 2405.11464): DePT plus prompt fusion and a gated multi-space projection of the prompt."""
from dataclasses import dataclass
from typing import Dict, List

import torch
from torch import nn

from fastprompt.methods.base import positive_int
from fastprompt.methods.dept import DePTConfig, DePTModel
from fastprompt.nn.prompt import EPTPrompt


@dataclass
class EPTConfig(DePTConfig):
    """EPT: DePT plus prompt fusion and a gated projection of the short prompt into
    ``num_spaces`` subspaces (see :class:`fastprompt.nn.EPTPrompt`).

    Args (besides DePT's):
        num_spaces: N.
        gate: ``"per_row"`` (every soft token computes its own mix of the spaces with a linear
            gating network) or ``"shared"`` (one learned mix for the whole prompt).
        projection_init_scale: s, the projection weights start as N(0, s^2 / d) (the projection
            is a residual branch, so a small s starts EPT close to DePT with fusion).
        fusion: the prompt fusion step (the short prompt attending over itself and the low-rank
            knowledge); ``False`` projects the short prompt directly (an ablation).
    """

    num_spaces: int = 4
    gate: str = "per_row"
    projection_init_scale: float = 0.1
    fusion: bool = True

    method = "ept"

    def validate(self) -> None:
        super().validate()
        positive_int("num_spaces", self.num_spaces)
        if self.gate not in ("per_row", "shared"):
            raise ValueError(f"gate: expected 'per_row' or 'shared', got {self.gate!r}")
        if not isinstance(self.fusion, bool):
            raise ValueError(f"fusion: expected True or False, got {self.fusion!r}")


class EPTModel(DePTModel):
    """EPT on a frozen transformers model: DePT's low-rank offset of the input embeddings, and
    the short prompt fused with the low-rank knowledge and passed through a gated multi-space
    projection (:class:`fastprompt.nn.EPTPrompt` has the exact formulation) before the input.

    :meth:`param_groups` puts the short prompt at ``lr_prompt``, the low-rank pair at
    ``lr_lowrank`` and the projection and its gate at ``lr_projection``."""

    config_class = EPTConfig
    DEFAULT_LR = {**DePTModel.DEFAULT_LR, "lr_projection": 1e-3}

    def _group_parameters(self) -> Dict[str, List[nn.Parameter]]:
        groups = super()._group_parameters()
        projection = {id(p) for p in self.prompt_encoder.projection.parameters()}
        groups["lr_projection"] = [p for p in self.prompt_encoder.projection.parameters() if p.requires_grad]
        groups["lr_prompt"] = [p for p in groups["lr_prompt"] if id(p) not in projection]
        return groups

    def _build_encoder(self, cfg: EPTConfig) -> nn.Module:
        return EPTPrompt(cfg.num_virtual_tokens, cfg.max_len, cfg.rank, self.token_dim, num_spaces=cfg.num_spaces,
                         gate=cfg.gate, projection_init_scale=cfg.projection_init_scale, fusion=cfg.fusion,
                         device=self._device(), dtype=torch.float32)
