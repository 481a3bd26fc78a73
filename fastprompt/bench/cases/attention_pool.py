"""Self-attention pooling and one IAPT generator: fastprompt vs eager reference vs
torch.compile(reference)."""
import torch

import fastprompt
from fastprompt.bench.cases._common import element_size, leaves, providers
from fastprompt.bench.core import Case
from fastprompt.reference import attention_pool_ref, iapt_generator_ref


def _pool_inputs(B, T, D, K, dtype, device, requires_grad):
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(B, T, D, generator=gen).to(device, dtype)
    queries = (torch.randn(D, K, generator=gen) / D ** 0.5).to(device, dtype)
    lengths = torch.randint(T // 2, T + 1, (B,), generator=gen)
    mask = (torch.arange(T).unsqueeze(0) < lengths.unsqueeze(1)).to(device)
    return leaves(requires_grad, z, queries) + (mask,)


def _pool(z, queries, mask):
    return fastprompt.attention_pool(z, queries, mask)


def _generator_inputs(B, T, d_model, r, K, dtype, device):
    gen = fastprompt.nn.IAPTPromptGenerator(d_model, r, K).to(device, dtype)
    hidden = torch.randn(B, T, d_model, device=device, dtype=dtype)
    mask = torch.ones(B, T, dtype=torch.bool, device=device)
    mask[:, T * 3 // 4:] = False
    params = [p.detach().clone().requires_grad_(True) for p in (
        gen.down.weight, gen.down.bias, gen.pool.queries, gen.activation.numerator,
        gen.activation.denominator, gen.up.weight, gen.up.bias)]
    return (hidden, mask, *params)


def _generator_fast(hidden, mask, dw, db, q, a, b, uw, ub):
    z = torch.nn.functional.linear(hidden, dw, db)
    pooled = fastprompt.attention_pool(z, q, mask)
    return torch.nn.functional.linear(fastprompt.rational(pooled, a, b, "A"), uw, ub)


def _generator_ref(hidden, mask, dw, db, q, a, b, uw, ub):
    return iapt_generator_ref(hidden, mask, dw, db, q, a, b, uw, ub, "A")


def cases(device: str, quick: bool):
    if quick:
        sizes = [(4, 64, 40, 4, torch.float32)]
    elif device.startswith("cuda"):
        sizes = [(32, 512, 320, 4, torch.float32), (8, 4096, 320, 4, torch.float32),
                 (32, 512, 320, 4, torch.bfloat16), (8, 4096, 320, 4, torch.bfloat16)]
    else:
        sizes = [(32, 512, 320, 4, torch.float32), (8, 4096, 320, 4, torch.float32)]
    out = []
    for B, T, D, K, dtype in sizes:
        shape = f"B={B},T={T},D={D},K={K}"
        z_bytes = B * T * D * element_size(dtype)
        flops = 4 * B * T * D * K  # scores + weighted sum
        out.append(Case(
            op="attention_pool", shape=shape, dtype=dtype, device=device, mode="fwd",
            make=lambda B=B, T=T, D=D, K=K, dt=dtype: _pool_inputs(B, T, D, K, dt, device, False),
            providers=providers(_pool, attention_pool_ref),
            bytes_moved=z_bytes, flops=flops,
        ))
        out.append(Case(
            op="attention_pool", shape=shape, dtype=dtype, device=device, mode="fwd+bwd",
            make=lambda B=B, T=T, D=D, K=K, dt=dtype: _pool_inputs(B, T, D, K, dt, device, True),
            providers=providers(_pool, attention_pool_ref, (0, 1)),
            # forward reads z; backward reads z and writes grad_z
            bytes_moved=3 * z_bytes, flops=3 * flops + 6 * B * T * D * K,
        ))
    # one IAPT generator (LLaMA-sized layer input, bottleneck 320) forward + backward
    if quick:
        gsizes = [(2, 32, 64, 16, 4)]
    else:
        gsizes = [(8, 512, 2048, 320, 4)] if device.startswith("cuda") else [(8, 256, 576, 320, 4)]
    for B, T, d_model, r, K in gsizes:
        shape = f"B={B},T={T},d={d_model},r={r},K={K}"
        grads = tuple(range(2, 9))
        out.append(Case(
            op="iapt_generator", shape=shape, dtype=torch.float32, device=device, mode="fwd+bwd",
            make=lambda B=B, T=T, d=d_model, r=r, K=K: _generator_inputs(B, T, d, r, K, torch.float32, device),
            providers=providers(_generator_fast, _generator_ref, grads),
        ))
    return out
