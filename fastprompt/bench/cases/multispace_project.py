"""Multi-space projection with gating: fastprompt vs eager reference vs torch.compile(reference),
plus, for a shared gate, an eager baseline that folds the weights the same way.

``flops`` counts the fastprompt algorithm: a shared gate folds the N weights first
(2 M d_in d_out for the product, N times fewer than the reference's 2 M N d_in d_out); per-row
gates project into every space like the reference (2 M N d_in d_out). Forward + backward adds
two products of the same size each.
"""
import torch

import fastprompt
from fastprompt.bench.cases._common import compiled, leaves
from fastprompt.bench.core import Case, fwd_bwd
from fastprompt.reference import multispace_project_folded_ref, multispace_project_ref


def _inputs(M, d_in, d_out, N, gate, dtype, device, requires_grad):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(M, d_in, generator=gen).to(device, dtype)
    weight = (torch.randn(N, d_in, d_out, generator=gen) / d_in ** 0.5).to(device, dtype)
    bias = (torch.randn(N, d_out, generator=gen) * 0.1).to(device, dtype)
    shape = (N,) if gate == "shared" else (M, N)
    logits = torch.randn(*shape, generator=gen).to(device, dtype)
    return leaves(requires_grad, x, weight, bias, logits)


def _fast(x, weight, bias, logits):
    return fastprompt.multispace_project(x, weight, bias, logits)


def cases(device: str, quick: bool):
    if quick:
        sizes = [(24, 40, 40, 4, "shared"), (64, 48, 48, 4, "per_row")]
    else:
        sizes = [
            (100, 768, 768, 4, "shared"),     # EPT: s=100, d=768, N=4
            (40, 4096, 4096, 8, "shared"),    # EPT: s=40, d=4096, N=8
            (8192, 1024, 1024, 8, "shared"),  # batched
            (8192, 1024, 1024, 8, "per_row"),
        ]
    dtypes = [torch.float32]
    if device.startswith("cuda") and not quick:
        dtypes.append(torch.bfloat16)
    out = []
    for M, d_in, d_out, N, gate in sizes:
        for dtype in dtypes:
            shape = f"M={M},d_in={d_in},d_out={d_out},N={N},gate={gate}"
            every_space = 2 * M * N * d_in * d_out
            flops = 2 * M * d_in * d_out if gate == "shared" else every_space
            note = f"reference: {every_space / 1e9:.2f} GFLOP forward"
            fwd = {"fastprompt": _fast, "eager": multispace_project_ref,
                   "compile": compiled(multispace_project_ref)}
            if gate == "shared":
                fwd["eager_folded"] = multispace_project_folded_ref
            grads = (0, 1, 2, 3)
            out.append(Case(
                op="multispace_project", shape=shape, dtype=dtype, device=device, mode="fwd",
                make=lambda M=M, a=d_in, b=d_out, N=N, g=gate, dt=dtype: _inputs(M, a, b, N, g, dt, device, False),
                providers=fwd, flops=flops, note=note,
            ))
            out.append(Case(
                op="multispace_project", shape=shape, dtype=dtype, device=device, mode="fwd+bwd",
                make=lambda M=M, a=d_in, b=d_out, N=N, g=gate, dt=dtype: _inputs(M, a, b, N, g, dt, device, True),
                providers={k: fwd_bwd(f, grad_argnums=grads) for k, f in fwd.items()},
                flops=3 * flops, note=note,
            ))
    return out
