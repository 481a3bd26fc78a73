"""Functional API: thin wrappers over torch.ops.fastprompt.* with fake kernels and autograd."""
from fastprompt.ops.attention_pool import attention_pool
from fastprompt.ops.rational import rational
from fastprompt.ops.task_arithmetic import combine, merge

__all__ = ["attention_pool", "rational"]
__all__ += ["combine", "merge"]

from fastprompt.ops.multispace_project import multispace_project  # noqa: E402

__all__ += ["multispace_project"]
