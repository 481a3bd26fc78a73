"""Argument checks shared by the Python wrappers (the C++ kernels check again)."""
import torch

FLOAT_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def check_tensor(name: str, value, *, dim=None, shape_doc: str = "") -> None:
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name}: expected a torch.Tensor, got {type(value).__name__}")
    if value.dtype not in FLOAT_DTYPES:
        raise RuntimeError(
            f"{name}: expected a floating tensor of dtype float32, float64, float16 or bfloat16, "
            f"got {value.dtype}"
        )
    if dim is not None and value.dim() != dim:
        raise RuntimeError(f"{name}: expected shape {shape_doc} ({dim} dims), got {tuple(value.shape)}")


def check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name}: expected one of {', '.join(map(repr, choices))}, got {value!r}")


def check_fake_dims(**tensors) -> None:
    """The dimension checks of a fake kernel: name=(tensor, dims, shape_doc) for each argument,
    checked in order with torch._check (the kernels check the rest)."""
    for name, (t, dims, shape_doc) in tensors.items():
        torch._check(t.dim() == dims, lambda name=name, shape_doc=shape_doc: f"{name}: expected shape {shape_doc}")
