import torch

__all__ = ["rational_ref"]


def rational_ref(x: torch.Tensor, numerator: torch.Tensor, denominator: torch.Tensor, form: str = "A") -> torch.Tensor:
    """Reference of :func:`fastprompt.rational` (Horner form, straight P / Q).

    x (..., C), numerator (G, m + 1), denominator (G, n) -> (..., C). Computes in the promoted
    dtype of x and the coefficients and returns x's dtype.
    """
    groups = numerator.shape[0]
    channels = x.shape[-1]
    compute = torch.promote_types(x.dtype, numerator.dtype)
    xg = x.to(compute).reshape(*x.shape[:-1], groups, channels // groups)
    a = numerator.to(compute).unsqueeze(-1)    # (G, m + 1, 1)
    b = denominator.to(compute).unsqueeze(-1)  # (G, n, 1)
    p = a[:, -1]
    for j in range(a.shape[1] - 2, -1, -1):
        p = p * xg + a[:, j]
    if form == "A":
        ax, ab = xg.abs(), b.abs()
        s = ab[:, -1]
        for k in range(b.shape[1] - 2, -1, -1):
            s = s * ax + ab[:, k]
        q = 1 + s * ax
    elif form == "B":
        s = b[:, -1]
        for k in range(b.shape[1] - 2, -1, -1):
            s = s * xg + b[:, k]
        q = 1 + (s * xg).abs()
    else:
        raise ValueError(f"form: expected 'A' or 'B', got {form!r}")
    return (p / q).reshape(x.shape).to(x.dtype)
