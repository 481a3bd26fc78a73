"""Rational activation: fastprompt vs eager reference vs torch.compile(reference)."""
import torch

import fastprompt
from fastprompt._dtypes import accumulation_dtype
from fastprompt.bench.cases._common import element_size, leaves, providers
from fastprompt.bench.core import Case
from fastprompt.reference import rational_ref


def _inputs(numel, channels, groups, degrees, dtype, device, requires_grad):
    m, n = degrees
    x = torch.randn(numel // channels, channels, device=device, dtype=dtype)
    coef_dtype = accumulation_dtype(dtype)
    a = fastprompt.nn.RationalActivation(groups, degrees, "A", "gelu").numerator.detach()
    b = fastprompt.nn.RationalActivation(groups, degrees, "A", "gelu").denominator.detach()
    a, b = a.to(device, coef_dtype), b.to(device, coef_dtype)
    return leaves(requires_grad, x, a, b)


def _fast(x, a, b):
    return fastprompt.rational(x, a, b, "A")


def _ref(x, a, b):
    return rational_ref(x, a, b, "A")


def cases(device: str, quick: bool):
    if device.startswith("cuda"):
        sizes = [(1 << 20, 1024, 8, torch.bfloat16)] if quick else [
            (1 << 28, 4096, 8, torch.bfloat16), (1 << 26, 4096, 8, torch.float32)]
    else:
        sizes = [(1 << 16, 1024, 8, torch.float32)] if quick else [
            (1 << 25, 4096, 8, torch.float32), (1 << 22, 1024, 8, torch.bfloat16)]
    # small groups (16 and 8 channels per group, as on narrow layers): forward + backward, where
    # the coefficient gradients are reduced over many short runs
    small = [] if quick or device.startswith("cuda") else [(1 << 25, 128, 8), (1 << 25, 64, 8)]
    out = []
    for numel, channels, groups in small:
        degrees = (5, 4)
        out.append(Case(
            op="rational", shape=f"n=2^{numel.bit_length() - 1},C={channels},G={groups},deg=5/4",
            dtype=torch.float32, device=device, mode="fwd+bwd",
            make=lambda numel=numel, c=channels, g=groups: _inputs(numel, c, g, degrees, torch.float32, device, True),
            providers=providers(_fast, _ref, (0, 1, 2)),
            bytes_moved=5 * numel * 4,
        ))
    for numel, channels, groups, dtype in sizes:
        for degrees in [(5, 4)]:
            shape = f"n=2^{numel.bit_length() - 1},C={channels},G={groups},deg={degrees[0]}/{degrees[1]}"
            esize = element_size(dtype)

            out.append(Case(
                op="rational", shape=shape, dtype=dtype, device=device, mode="fwd",
                make=lambda numel=numel, c=channels, g=groups, d=degrees, dt=dtype: _inputs(numel, c, g, d, dt, device, False),
                providers=providers(_fast, _ref),
                bytes_moved=2 * numel * esize,
            ))
            out.append(Case(
                op="rational", shape=shape, dtype=dtype, device=device, mode="fwd+bwd",
                make=lambda numel=numel, c=channels, g=groups, d=degrees, dt=dtype: _inputs(numel, c, g, d, dt, device, True),
                providers=providers(_fast, _ref, (0, 1, 2)),
                # forward: read x, write y; backward: read x and dy, write dx
                bytes_moved=5 * numel * esize,
            ))
    return out
