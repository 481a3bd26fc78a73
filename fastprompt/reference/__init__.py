"""Pure-PyTorch references of every fastprompt op: the specification the kernels are tested
against (in float64) and the eager / torch.compile baselines of the benchmarks.

Every public module of this package lists its references in ``__all__``; they are found by
scanning the package and re-exported here.
"""
from fastprompt._discover import export_submodules

__all__ = export_submodules(__name__, __path__, globals())
