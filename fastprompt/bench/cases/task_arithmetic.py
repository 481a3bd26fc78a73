"""Batched vector arithmetic: combine (a batch of per-row mixes of a bank of task vectors) and the
merge methods, fastprompt vs eager reference vs torch.compile(reference) vs peft's merge utilities."""
import functools

import torch

import fastprompt
from fastprompt.bench.cases._common import element_size, leaves, providers
from fastprompt.bench.core import Case
from fastprompt.reference import combine_ref, merge_ref
from fastprompt.reference.task_arithmetic import MERGE_METHODS
DENSITY = 0.5


def _combine_inputs(T, L, d, B, dtype, device, requires_grad):
    gen = torch.Generator().manual_seed(0)
    bank = torch.randn(T, L, d, generator=gen).to(device, dtype)
    weights = torch.rand(B, T, generator=gen).to(device)
    base = torch.randn(L, d, generator=gen).to(device, dtype)
    return leaves(requires_grad, bank, weights) + (base,)


def _combine(bank, weights, base):
    return fastprompt.combine(bank, weights, base)


def _merge_inputs(T, shape, dtype, device):
    gen = torch.Generator().manual_seed(1)
    vectors = torch.randn((T,) + shape, generator=gen).to(device, dtype)
    weights = torch.rand(T, generator=gen).to(device)
    return vectors, weights


def _fast_merge(vectors, weights, method):
    return fastprompt.merge(vectors, method, weights, DENSITY, "total", 0)


def _ref_merge(vectors, weights, method):
    return merge_ref(vectors, method, weights, DENSITY, "total", 0)


def _peft_merge(vectors, weights, method):
    from peft.utils import merge_utils
    tensors = list(vectors.unbind(0))
    if method == "task_arithmetic":
        return merge_utils.task_arithmetic(tensors, weights)
    if method == "magnitude_prune":
        return merge_utils.magnitude_prune(tensors, weights, DENSITY)
    if method == "ties":
        return merge_utils.ties(tensors, weights, DENSITY, "total")
    if method == "dare":
        return merge_utils.dare_linear(tensors, weights, DENSITY)
    return merge_utils.dare_ties(tensors, weights, DENSITY, "total")


def _has_peft():
    try:
        import peft.utils.merge_utils  # noqa: F401
        return True
    except ImportError:
        return False


def cases(device: str, quick: bool):
    out = []
    csizes = [(4, 10, 64, 8)] if quick else [(16, 100, 4096, 64)]
    dtypes = [torch.float32] if quick or not device.startswith("cuda") else [torch.float32, torch.bfloat16]
    for T, L, d, B in csizes:
        for dtype in dtypes:
            shape = f"T={T},L={L},d={d},B={B}"
            es = element_size(dtype)
            n = L * d
            fwd_bytes = (T + B + 1) * n * es  # bank and base read once, out written once
            out.append(Case(
                op="combine", shape=shape, dtype=dtype, device=device, mode="fwd",
                make=lambda T=T, L=L, d=d, B=B, dt=dtype: _combine_inputs(T, L, d, B, dt, device, False),
                providers=providers(_combine, combine_ref),
                bytes_moved=fwd_bytes, flops=2 * B * T * n,
            ))
            out.append(Case(
                op="combine", shape=shape, dtype=dtype, device=device, mode="fwd+bwd",
                make=lambda T=T, L=L, d=d, B=B, dt=dtype: _combine_inputs(T, L, d, B, dt, device, True),
                providers=providers(_combine, combine_ref, (0, 1)),
                # + backward: grad_out read (twice: grad_bank, grad_weights), bank read, grad_bank written
                bytes_moved=fwd_bytes + (2 * B + 2 * T) * n * es, flops=6 * B * T * n,
            ))
    msizes = [(8, (10, 64))] if quick else [(8, (100, 4096)), (8, (10_000_000,))]
    peft = _has_peft()
    for T, shape in msizes:
        numel = 1
        for s in shape:
            numel *= s
        label = f"T={T},{'x'.join(map(str, shape))}"
        for method in MERGE_METHODS:
            merge_providers = providers(functools.partial(_fast_merge, method=method),
                                        functools.partial(_ref_merge, method=method))
            if peft:
                merge_providers["peft"] = functools.partial(_peft_merge, method=method)
            out.append(Case(
                op=f"merge_{method}", shape=label, dtype=torch.float32, device=device, mode="fwd",
                make=lambda T=T, shape=shape: _merge_inputs(T, shape, torch.float32, device),
                providers=merge_providers,
                bytes_moved=(T + 1) * numel * 4,  # every vector read once, the result written once
                note=f"density={DENSITY}" if method != "task_arithmetic" else "",
            ))
    return out
