"""Pure-PyTorch references of every fastprompt op: the specification the kernels are tested
against (in float64) and the eager / torch.compile baselines of the benchmarks."""
from fastprompt.reference.rational import rational_ref

__all__ = ["rational_ref"]
