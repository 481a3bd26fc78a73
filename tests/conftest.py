"""Shared test parameters: devices (CUDA cases skip without a GPU) and per-dtype tolerances."""
import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="no GPU visible")),
]

# (rtol, atol) of a kernel run in `dtype` against the float64 reference
TOLERANCES = {
    torch.float64: (1e-9, 1e-10),
    torch.float32: (2e-4, 2e-5),
    torch.float16: (1e-2, 1e-2),
    torch.bfloat16: (6e-2, 6e-2),
}

LOW_PRECISION = [torch.float16, torch.bfloat16]


def assert_close(actual, expected, dtype, scale=1.0, msg=""):
    rtol, atol = TOLERANCES[dtype]
    torch.testing.assert_close(actual.double(), expected.double(), rtol=rtol * scale, atol=atol * scale, msg=msg or None)
