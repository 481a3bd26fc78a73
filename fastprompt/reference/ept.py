"""Reference of the EPT prompt (:class:`fastprompt.nn.EPTPrompt`)."""
import math

import torch
import torch.nn.functional as F

from fastprompt.reference.multispace_project import multispace_project_ref

__all__ = ["ept_prompt_ref", "ept_prompt_ref_from_module"]


def ept_prompt_ref(prompt, A, B, weight, bias=None, gate_logits=None, gate_weight=None, gate_bias=None):
    """The EPT prompt from its parameters, in plain PyTorch (forms the knowledge K = A B).

    prompt (m, d), A (max_len, r), B (r, d), weight (N, d, d), bias (N, d) or None; the gate is
    either shared ``gate_logits`` (N,) or per row ``gate_weight`` (N, d) and ``gate_bias`` (N,)
    (an nn.Linear(d, N)); neither means uniform. Returns Z (m, d):

        K = A B;  M = [prompt; K]
        F = prompt + softmax(prompt M^T / sqrt(d)) M
        Z = F + sum_k softmax(gate)_k (F W_k + b_k)
    """
    knowledge = torch.cat([prompt, A @ B], dim=0)
    attn = torch.softmax(prompt @ knowledge.t() / math.sqrt(prompt.shape[1]), dim=1)
    fused = prompt + attn @ knowledge
    if gate_weight is not None:
        if gate_logits is not None:
            raise ValueError("gate_logits, gate_weight: give a shared gate or a gating network, not both")
        gate_logits = F.linear(fused, gate_weight, gate_bias)
    return fused + multispace_project_ref(fused, weight, bias, gate_logits)


def ept_prompt_ref_from_module(module) -> torch.Tensor:
    """:func:`ept_prompt_ref` with the parameters of an EPTPrompt."""
    proj = module.projection
    gate_weight = proj.gate_net.weight if proj.gate_net is not None else None
    gate_bias = proj.gate_net.bias if proj.gate_net is not None else None
    return ept_prompt_ref(module.prompt.weight, module.offset.A, module.offset.B, proj.weight, proj.bias,
                          proj.gate_logits, gate_weight, gate_bias)
