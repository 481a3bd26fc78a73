"""Functional API: thin wrappers over torch.ops.fastprompt.* with fake kernels and autograd.

Every public module of this package is one op family and lists its public functions in
``__all__``; they are found by scanning the package and re-exported here (and by
:mod:`fastprompt`). Adding an op family is adding a module here.
"""
from fastprompt._discover import export_submodules

__all__ = export_submodules(__name__, __path__, globals())
