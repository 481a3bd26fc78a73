"""The op families are found, not listed: every ops module is exported, benchmarked and has
kernels for every operator it registers."""
import torch

import fastprompt
from fastprompt import _library, ops, reference
from fastprompt._discover import public_modules
from fastprompt.bench.cases import FAMILIES


def test_every_op_family_is_exported_and_benchmarked():
    families = public_modules("fastprompt.ops", ops.__path__)
    assert {"rational", "attention_pool", "multispace_project", "task_arithmetic"} <= set(families)
    assert set(families) <= set(FAMILIES)
    for name in ops.__all__:
        assert getattr(fastprompt, name) is getattr(ops, name)
    for name in ("combine", "merge", "rational", "attention_pool", "multispace_project"):
        assert name in fastprompt.__all__
    for name in ("combine_ref", "merge_ref", "rational_ref", "attention_pool_ref", "multispace_project_ref"):
        assert name in reference.__all__


def test_every_operator_has_a_cpu_kernel_and_cuda_matches_built_with_cuda():
    names = _library.operators()
    assert {"fastprompt::combine", "fastprompt::merge", "fastprompt::rational_backward"} <= set(names)
    has = torch._C._dispatch_has_kernel_for_dispatch_key
    assert all(has(n, "CPU") for n in names)
    assert fastprompt.built_with_cuda() == all(has(n, "CUDA") for n in names)
