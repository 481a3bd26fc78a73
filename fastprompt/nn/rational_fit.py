"""Least-squares fits of rational functions to common activations: the initial coefficients
of :class:`fastprompt.nn.RationalActivation`.

Regenerate the stored table with::

    python -m fastprompt.nn.rational_fit            # writes fastprompt/nn/rational_init.json

Each fit minimises the mean squared error on a dense grid over [-3, 3] in float64: a linear
least-squares start (P(x) - f(x) * S(x) = f(x) with Q = 1 + S), then L-BFGS on the exact form
("A" or "B"), then a few L-BFGS rounds on a higher power of the error to shrink the maximum.
The table records the maximum absolute error on [-3, 3] of every fit.
"""
import argparse
import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F

from fastprompt.reference.rational import rational_ref

TABLE_PATH = Path(__file__).with_name("rational_init.json")
INTERVAL = (-3.0, 3.0)
ORDERS = ((3, 2), (4, 3), (5, 4), (6, 5))
FORMS = ("A", "B")
ACTIVATIONS = {
    "gelu": lambda x: F.gelu(x),
    "relu": torch.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.01),
    "silu": F.silu,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}


def _grid(points: int = 4001) -> torch.Tensor:
    return torch.linspace(*INTERVAL, points, dtype=torch.float64)


def _linear_start(x, y, m, n):
    cols = [x**j for j in range(m + 1)] + [-y * x**k for k in range(1, n + 1)]
    sol = torch.linalg.lstsq(torch.stack(cols, 1), y.unsqueeze(1)).solution.squeeze(1)
    return sol[: m + 1].clone(), sol[m + 1 :].clone()


def _evaluate(x, a, b, form):
    return rational_ref(x.unsqueeze(-1), a.unsqueeze(0), b.unsqueeze(0), form).squeeze(-1)


def fit(name: str, form: str, m: int, n: int) -> dict:
    """Fit activation `name` with a rational of orders (m, n) in `form`; returns the table entry."""
    x = _grid()
    y = ACTIVATIONS[name](x)
    a0, b0 = _linear_start(x, y, m, n)
    best = None
    for a_init, b_init in ((a0, b0), (a0, torch.zeros_like(b0)), (a0, 0.1 * torch.ones_like(b0))):
        a = a_init.clone().requires_grad_(True)
        b = b_init.clone().requires_grad_(True)
        for power in (2, 4, 8):
            opt = torch.optim.LBFGS([a, b], lr=1, max_iter=400, history_size=50,
                                    tolerance_grad=1e-14, tolerance_change=1e-16,
                                    line_search_fn="strong_wolfe")

            def closure():
                opt.zero_grad()
                loss = ((_evaluate(x, a, b, form) - y).abs() ** power).mean() ** (1.0 / power)
                loss.backward()
                return loss

            opt.step(closure)
        with torch.no_grad():
            err = (_evaluate(x, a, b, form) - y).abs().max().item()
        if math.isfinite(err) and (best is None or err < best[0]):
            best = (err, a.detach().clone(), b.detach().clone())
    err, a, b = best
    return {"numerator": a.tolist(), "denominator": b.tolist(), "max_abs_error": err}


def build_table() -> dict:
    table = {"interval": list(INTERVAL), "fits": {}}
    for name in ACTIVATIONS:
        for form in FORMS:
            for m, n in ORDERS:
                table["fits"].setdefault(name, {}).setdefault(form, {})[f"{m},{n}"] = fit(name, form, m, n)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path, default=TABLE_PATH)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    table = build_table()
    args.output.write_text(json.dumps(table, indent=1) + "\n")
    for name, forms in table["fits"].items():
        for form, orders in forms.items():
            errs = ", ".join(f"({k}) {v['max_abs_error']:.2e}" for k, v in orders.items())
            print(f"{name:>10} {form}: {errs}")


if __name__ == "__main__":
    main()
