"""The EPT prompt module (fusion + gated multi-space projection, forward + backward):
fastprompt (fastprompt.nn.EPTPrompt's computation, the multispace_project op) vs the eager
reference vs torch.compile(reference)."""
import torch

from fastprompt.bench.cases._common import element_size, providers
from fastprompt.bench.core import Case
from fastprompt.nn.prompt import ept_prompt
from fastprompt.reference import ept_prompt_ref


def _inputs(m, max_len, r, d, n, gate, dtype, device):
    gen = torch.Generator().manual_seed(0)

    def rand(*shape, scale=1.0):
        return (torch.randn(*shape, generator=gen) * scale).to(device, dtype).requires_grad_(True)

    prompt = rand(m, d, scale=0.5)
    A = rand(max_len, r, scale=r ** -0.5)
    B = rand(r, d, scale=0.1)
    weight = rand(n, d, d, scale=0.1 * d ** -0.5)
    bias = rand(n, d, scale=0.01)
    if gate == "shared":
        return prompt, A, B, weight, bias, rand(n), None, None
    return prompt, A, B, weight, bias, None, rand(n, d, scale=d ** -0.5), rand(n, scale=0.1)


def cases(device: str, quick: bool):
    # (soft tokens m, max_len, rank r, d, N): DePT's budget split of a 100-token prompt
    # (m = 60, r = 30 at d = 768, max_len = 256); d = 4096, N = 8 on the GPU (its projection
    # weights alone are 512 MB in float32), a modest d = 2048 on the CPU
    if quick:
        sizes = [(8, 16, 4, 64, 2)]
    elif device.startswith("cuda"):
        sizes = [(60, 256, 30, 768, 4), (60, 256, 30, 4096, 8)]
    else:
        sizes = [(60, 256, 30, 768, 4), (60, 256, 30, 2048, 8)]
    out = []
    for m, max_len, r, d, n in sizes:
        for gate in ("shared", "per_row"):
            dtype = torch.float32
            shape = f"m={m},l={max_len},r={r},d={d},N={n},gate={gate}"
            grads = (0, 1, 2, 3, 4, 5) if gate == "shared" else (0, 1, 2, 3, 4, 6, 7)
            # the reference projects into every space: 2 m N d^2 forward, twice that backward
            flops = 6 * m * n * d * d
            # the projection weights dominate the traffic: read forward, read and dW written backward
            bytes_moved = 3 * n * d * d * element_size(dtype)
            out.append(Case(
                op="ept_prompt", shape=shape, dtype=dtype, device=device, mode="fwd+bwd",
                make=lambda a=(m, max_len, r, d, n, gate, dtype, device): _inputs(*a),
                providers=providers(ept_prompt, ept_prompt_ref, grads),
                bytes_moved=bytes_moved, flops=flops,
                note="flops: every-space projection (the reference's work); bytes: projection weights",
            ))
    return out
