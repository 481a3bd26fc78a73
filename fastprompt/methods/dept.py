"""DePT (arXiv 2309.05173): a short soft prompt plus a low-rank offset of the input embeddings."""
from dataclasses import dataclass
from typing import Dict, List, Optional

import torch
from torch import nn

from fastprompt.methods.base import positive_int
from fastprompt.methods.prompt_tuning import PromptTuningConfig, PromptTuningModel
from fastprompt.nn.prompt import DePTPrompt, SoftPrompt


@dataclass
class DePTConfig(PromptTuningConfig):
    """DePT: a short prompt of ``num_virtual_tokens`` (m) tokens and a low-rank offset
    A (max_len, rank) @ B (rank, d) of the input embeddings. ``init*`` apply to the short prompt.
    :func:`match_prompt_budget` picks (m, rank) with the parameter count of a plain prompt."""

    rank: int = 8
    max_len: int = 256

    method = "dept"

    def validate(self) -> None:
        super().validate()
        positive_int("rank", self.rank)
        positive_int("max_len", self.max_len)



class DePTModel(PromptTuningModel):
    """DePT on a frozen transformers model: a short prompt of m soft tokens before the input and a
    low-rank offset A @ B added to the input token embeddings by position (B zero-initialised).

    Use :meth:`param_groups` for the separate learning rates of the prompt and the low-rank pair
    (DePT trains the low-rank pair with a much smaller learning rate than the prompt)."""

    config_class = DePTConfig
    _SAVE_KEYS = {"prompt.weight": "prompt_embeddings", "offset.A": "lowrank_A", "offset.B": "lowrank_B"}
    DEFAULT_LR = {**PromptTuningModel.DEFAULT_LR, "lr_lowrank": 1e-3}

    def _build_encoder(self, cfg: DePTConfig) -> nn.Module:
        return DePTPrompt(cfg.num_virtual_tokens, cfg.max_len, cfg.rank, self.token_dim, device=self._device(),
                          dtype=torch.float32)

    def _soft_prompt(self, encoder: Optional[nn.Module] = None) -> SoftPrompt:
        return (self.prompt_encoder if encoder is None else encoder).prompt

    def embed_inputs(self, input_ids=None, inputs_embeds=None) -> torch.Tensor:
        embeds = super().embed_inputs(input_ids, inputs_embeds)
        if self._rows is None:
            return self.prompt_encoder.offset(embeds)
        length = embeds.shape[1]
        return embeds + self._per_row(lambda encoder: encoder.offset.offset(length)).to(embeds.dtype)

    def _decode_offset_hook(self, length: int):
        """The tokens generated after the input get the offset of their positions too (T, T+1, ...),
        as they do in forward() on the whole sequence: the decoding steps embed new tokens
        through the input-embedding module, which this hook extends. A generation that runs past
        max_len raises ValueError."""
        offset = self.prompt_encoder.offset
        state = {"position": length}

        def hook(module, args, output):
            start = state["position"]
            stop = start + output.shape[-2]
            state["position"] = stop
            if self._rows is None:
                return output + offset.rows(start, stop).to(output.dtype)
            return output + self._per_row(lambda encoder: encoder.offset.rows(start, stop)).to(output.dtype)

        return self.word_embeddings.register_forward_hook(hook)

    def lowrank_parameters(self) -> List[nn.Parameter]:
        return [self.prompt_encoder.offset.A, self.prompt_encoder.offset.B]

    def _group_parameters(self) -> Dict[str, List[nn.Parameter]]:
        low = {id(p) for p in self.lowrank_parameters()}
        groups = super()._group_parameters()
        groups["lr_lowrank"] = [p for p in self.lowrank_parameters() if p.requires_grad]
        groups["lr_prompt"] = [p for p in groups["lr_prompt"] if id(p) not in low]
        return groups
