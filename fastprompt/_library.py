"""Loads the compiled operator library (fastprompt._C) that registers torch.ops.fastprompt."""
import importlib

import torch

try:
    _C = importlib.import_module("fastprompt._C")
except ImportError as exc:  # pragma: no cover - only without a build
    raise ImportError(
        "fastprompt's compiled extension (fastprompt._C) is missing or does not match this "
        "torch. Build it with `pip install --no-build-isolation -e .` or "
        "`python setup.py build_ext --inplace` (see README)."
    ) from exc


def library_path() -> str:
    """Path of the loaded shared library."""
    return _C.__file__


def operators() -> list:
    """Qualified names ("fastprompt::<op>") of every operator the library registers."""
    return sorted(n for n in torch._C._dispatch_get_all_op_names() if n.startswith("fastprompt::"))


def built_with_cuda() -> bool:
    """True when the CUDA kernels of every op family were compiled into this build."""
    ops = operators()
    return bool(ops) and all(torch._C._dispatch_has_kernel_for_dispatch_key(op, "CUDA") for op in ops)
