"""Functional API: thin wrappers over torch.ops.fastprompt.* with fake kernels and autograd."""
from fastprompt.ops.rational import rational

__all__ = ["rational"]
