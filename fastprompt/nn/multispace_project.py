import math

import torch
from torch import nn

from fastprompt.ops.multispace_project import multispace_project

GATES = ("shared", "per_row")


class MultiSpaceProjection(nn.Module):
    """Projects into ``num_spaces`` subspaces and recombines them with a softmax gate
    (see :func:`fastprompt.multispace_project`).

    Args:
        d_in: input feature size.
        d_out: output feature size.
        num_spaces: N, the number of subspaces (projections).
        gate: "shared": one learned gate over the N spaces for every row (parameter
            ``gate_logits`` (N,), initialised to zeros, i.e. uniform); "per_row": a gating
            network ``gate_net = nn.Linear(d_in, N)`` computes the logits of each row from x.
        bias: whether every space has a bias (parameter ``bias`` (N, d_out)).

    Shape: input x (..., d_in); output (..., d_out).
    Parameters: weight (N, d_in, d_out) initialised like nn.Linear(d_in, d_out) per space
    (kaiming-uniform, bound 1 / sqrt(d_in)); bias (N, d_out) uniform in +-1 / sqrt(d_in).
    """

    def __init__(self, d_in: int, d_out: int, num_spaces: int, gate: str = "shared",
                 bias: bool = True, device=None, dtype=None):
        super().__init__()
        for name, value in (("d_in", d_in), ("d_out", d_out), ("num_spaces", num_spaces)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name}: expected a positive int, got {value!r}")
        if gate not in GATES:
            raise ValueError(f"gate: expected one of {', '.join(map(repr, GATES))}, got {gate!r}")
        self.d_in, self.d_out, self.num_spaces, self.gate = d_in, d_out, num_spaces, gate
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(num_spaces, d_in, d_out, **factory))
        self.bias = nn.Parameter(torch.empty(num_spaces, d_out, **factory)) if bias else None
        if gate == "shared":
            self.gate_logits = nn.Parameter(torch.zeros(num_spaces, **factory))
            self.gate_net = None
        else:
            self.register_parameter("gate_logits", None)
            self.gate_net = nn.Linear(d_in, num_spaces, **factory)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        bound = 1.0 / math.sqrt(self.d_in)
        # nn.Linear's kaiming_uniform_(a=sqrt(5)) on a (d_out, d_in) weight has bound 1/sqrt(d_in)
        nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            nn.init.uniform_(self.bias, -bound, bound)
        if self.gate_logits is not None:
            nn.init.zeros_(self.gate_logits)
        if self.gate_net is not None:
            self.gate_net.reset_parameters()

    def gates(self, x: torch.Tensor) -> torch.Tensor:
        """Gate logits for x: (N,) shared or x.shape[:-1] + (N,) per row."""
        if self.gate == "shared":
            return self.gate_logits
        return self.gate_net(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() < 1 or x.shape[-1] != self.d_in:
            raise ValueError(f"x: expected shape (..., {self.d_in}), got {tuple(x.shape)}")
        return multispace_project(x, self.weight, self.bias, self.gates(x))

    def extra_repr(self) -> str:
        return (f"d_in={self.d_in}, d_out={self.d_out}, num_spaces={self.num_spaces}, "
                f"gate={self.gate!r}, bias={self.bias is not None}")
