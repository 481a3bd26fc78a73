"""The gathered linear layer (one layer per batch row, the projections of batched IAPT
generators): fastprompt vs the eager gather + bmm reference vs torch.compile(reference)."""
import torch

import fastprompt
from fastprompt.bench.cases._common import element_size, leaves, providers
from fastprompt.bench.core import Case
from fastprompt.reference import gathered_linear_ref


def _inputs(B, T, K, N, A, dtype, device, requires_grad):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(B, T, K, generator=gen).to(device, dtype)
    weight = (torch.randn(A, N, K, generator=gen) / K ** 0.5).to(device, dtype)
    bias = torch.randn(A, N, generator=gen).to(device, dtype)
    index = torch.randint(0, A, (B,), generator=gen).to(device)
    return leaves(requires_grad, x, weight, bias) + (index,)


def cases(device: str, quick: bool):
    # (B, T, K, N, A): a SmolLM2-sized generator's down-projection (576 -> 32) over a prompt and
    # its up-projection (32 -> 576) of the 4 pooled tokens, one layer per tenant
    if quick:
        sizes = [(8, 16, 64, 16, 4), (8, 4, 16, 64, 4)]
    elif device.startswith("cuda"):
        sizes = [(64, 512, 2048, 64, 64), (64, 4, 64, 2048, 64), (64, 512, 576, 32, 64)]
    else:
        sizes = [(16, 64, 576, 32, 16), (16, 4, 32, 576, 16), (64, 64, 576, 32, 64)]
    dtypes = [torch.float32, torch.bfloat16] if device.startswith("cuda") and not quick else [torch.float32]
    out = []
    for B, T, K, N, A in sizes:
        for dtype in dtypes:
            shape = f"B={B},T={T},K={K},N={N},A={A}"
            size = element_size(dtype)
            # x, the rows' weights and the output; flops of the products
            io = (B * T * K + min(A, B) * N * K + B * T * N) * size
            flops = 2 * B * T * K * N
            out.append(Case(
                op="gathered_linear", shape=shape, dtype=dtype, device=device, mode="fwd",
                make=lambda B=B, T=T, K=K, N=N, A=A, dt=dtype: _inputs(B, T, K, N, A, dt, device, False),
                providers=providers(fastprompt.gathered_linear, gathered_linear_ref),
                bytes_moved=io, flops=flops,
            ))
            out.append(Case(
                op="gathered_linear", shape=shape, dtype=dtype, device=device, mode="fwd+bwd",
                make=lambda B=B, T=T, K=K, N=N, A=A, dt=dtype: _inputs(B, T, K, N, A, dt, device, True),
                providers=providers(fastprompt.gathered_linear, gathered_linear_ref, (0, 1, 2)),
                bytes_moved=3 * io, flops=3 * flops,
            ))
    return out
