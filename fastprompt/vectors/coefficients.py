"""Choosing the coefficients of a combination of task prompt vectors.

Both tools score a candidate prompt ``init + sum_t c_t tau_t`` with an *objective*: a callable
prompt (L, d) -> score. Build one from a model and validation batches with
:func:`prompt_objective`, or pass your own (e.g. accuracy on a validation set).

* :func:`grid_search_coefficients`: evaluate every coefficient tuple of a grid (or one shared
  coefficient), return the best and the whole table.
* :class:`MixingCoefficients` / :func:`learn_coefficients`: learnable coefficients (raw, or
  softmax weights from logits) over a frozen bank, trained by gradient through
  :func:`fastprompt.combine`.
"""
import itertools
import math
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from fastprompt.vectors.init import coefficient_tensor, vector_bank

Objective = Callable[[torch.Tensor], torch.Tensor]
DEFAULT_GRID = tuple(round(0.1 * i, 1) for i in range(11))


# ---- objectives ------------------------------------------------------------------------------
def _soft_prompt_parameter(model: nn.Module) -> Optional[str]:
    names = []
    for mod_name, module in model.named_modules():
        if type(module).__name__ == "SoftPrompt" and isinstance(getattr(module, "weight", None), torch.Tensor):
            names.append(f"{mod_name}.weight" if mod_name else "weight")
    if len(names) > 1:
        raise ValueError(f"model: it holds several soft prompts ({names}); pass param_name")
    return names[0] if names else None


def _prompt_wrapper(model: nn.Module, prompt: torch.Tensor):
    """A :class:`fastprompt.methods.PromptTuningModel` that places a prompt of ``prompt``'s shape
    in front of ``model``'s input (the model's requires_grad flags are left as they were)."""
    from fastprompt.methods import PromptTuningModel

    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        wrapper = PromptTuningModel(model, num_virtual_tokens=prompt.shape[0], init="tensor",
                                    init_tensor=prompt.detach().float(), placement="front", modules_to_save=[])
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
    return wrapper, f"adapters.{wrapper.active_adapter}.weight"


def prompt_objective(model: nn.Module, batches: Iterable[Dict], loss_fn: Optional[Callable] = None,
                     param_name: Optional[str] = None) -> Objective:
    """objective(prompt) -> mean loss of ``model`` over ``batches`` with that prompt
    (differentiable in the prompt; the model's own parameters are left untouched).

    model: a prompt-tuning model holding one :class:`fastprompt.nn.SoftPrompt` (e.g.
    :class:`fastprompt.methods.PromptTuningModel`; the prompt replaces its weight through
    ``torch.func.functional_call``), a module with the parameter ``param_name``, or a plain
    transformers model (the prompt is prepended to the input embeddings).
    batches: dicts of keyword arguments of the model (input_ids, attention_mask, labels, ...).
    loss_fn(output, batch) -> loss; default ``output.loss``.
    """
    batches = list(batches)
    if not batches:
        raise ValueError("batches: expected at least one validation batch")
    name = param_name or _soft_prompt_parameter(model)
    if name is None and not hasattr(model, "get_input_embeddings"):
        raise ValueError(f"model: {type(model).__name__} holds no SoftPrompt and has no get_input_embeddings(); "
                         "pass param_name or your own objective")
    if param_name is not None and param_name not in dict(model.named_parameters()):
        raise ValueError(f"param_name: {model.__class__.__name__} has no parameter {param_name!r}")

    wrapped = {}

    def objective(prompt: torch.Tensor) -> torch.Tensor:
        target, key = model, name
        if key is None:  # a plain transformers model: the prompt goes in front of its input
            if prompt.shape not in wrapped:
                wrapped[prompt.shape] = _prompt_wrapper(model, prompt)
            target, key = wrapped[prompt.shape]
        total = 0.0
        for batch in batches:
            out = torch.func.functional_call(target, {key: prompt}, args=(), kwargs=dict(batch))
            loss = loss_fn(out, batch) if loss_fn is not None else out.loss
            total = total + loss
        return total / len(batches)

    return objective


def _score(value) -> float:
    if isinstance(value, torch.Tensor):
        return float(value.detach().float().mean())
    return float(value)


# ---- grid search -----------------------------------------------------------------------------
@dataclass
class CoefficientSearch:
    """Result of :func:`grid_search_coefficients`."""

    best: Tuple[float, ...]               # the coefficient of each vector
    best_score: float
    table: List[Tuple[Tuple[float, ...], float]]   # (coefficients, score) of every candidate, in order
    maximize: bool = False
    best_prompt: Optional[torch.Tensor] = field(default=None, repr=False)

    def __str__(self) -> str:
        lines = ["coefficients -> score"]
        for coefs, score in self.table:
            mark = "  *" if coefs == self.best else ""
            lines.append(f"{', '.join(f'{c:g}' for c in coefs)} -> {score:.6g}{mark}")
        return "\n".join(lines)


def grid_search_coefficients(init: torch.Tensor, vectors, evaluate: Optional[Objective] = None, *,
                             model: Optional[nn.Module] = None, batches=None, loss_fn=None,
                             grid: Optional[Sequence[float]] = None, candidates=None, shared: bool = False,
                             maximize: bool = False, max_candidates: int = 10000,
                             chunk: int = 64) -> CoefficientSearch:
    """Evaluate ``init + sum_t c_t tau_t`` for every coefficient tuple and keep the best.

    evaluate: objective(prompt) -> score; or ``model`` and validation ``batches`` (scored by
    :func:`prompt_objective`, lower is better). grid: the values tried for each coefficient
    (default 0, 0.1, ..., 1); all vectors get the same coefficient when ``shared``, otherwise every
    combination is tried (len(grid) ** T candidates, at most ``max_candidates``). candidates: an
    explicit list of coefficient tuples instead of a grid. maximize: higher scores are better
    (e.g. accuracy). Ties keep the first candidate.
    """
    bank = vector_bank(vectors)
    count = bank.shape[0]
    if evaluate is None:
        if model is None or batches is None:
            raise ValueError("evaluate: pass an evaluation callable, or model and batches")
        evaluate = prompt_objective(model, batches, loss_fn=loss_fn)
    elif model is not None:
        raise ValueError("evaluate: pass either evaluate or model (with batches), not both")
    if not isinstance(init, torch.Tensor) or init.shape != bank.shape[1:]:
        got = tuple(init.shape) if isinstance(init, torch.Tensor) else type(init).__name__
        raise ValueError(f"init: expected a prompt of shape {tuple(bank.shape[1:])}, got {got}")
    if candidates is not None:
        cands = [tuple(float(c) for c in cand) for cand in candidates]
        bad = [c for c in cands if len(c) != count]
        if bad:
            raise ValueError(f"candidates: expected {count} coefficients per candidate, got {bad[0]}")
    else:
        values = [float(v) for v in (DEFAULT_GRID if grid is None else grid)]
        if not values:
            raise ValueError("grid: expected at least one value")
        if any(not math.isfinite(v) for v in values):
            raise ValueError(f"grid: expected finite values, got {values}")
        if shared:
            cands = [(v,) * count for v in values]
        else:
            if len(values) ** count > max_candidates:
                raise ValueError(f"grid: {len(values)} values for {count} vectors make {len(values) ** count} "
                                 f"candidates (max_candidates={max_candidates}); use shared=True, a coarser grid "
                                 "or learn_coefficients")
            cands = list(itertools.product(values, repeat=count))
    if not cands:
        raise ValueError("candidates: expected at least one candidate")
    import fastprompt

    bank = bank.to(device=init.device, dtype=init.dtype)
    table = []
    best_i, best_score, best_prompt = -1, None, None
    with torch.no_grad():
        for start in range(0, len(cands), chunk):
            part = cands[start:start + chunk]
            w = torch.tensor(part, dtype=init.dtype, device=init.device)
            prompts = fastprompt.combine(bank, w, base=init)        # (G, L, d) in one call
            for j, coefs in enumerate(part):
                score = _score(evaluate(prompts[j]))
                table.append((coefs, score))
                better = best_score is None or (score > best_score if maximize else score < best_score)
                if better and not math.isnan(score):
                    best_i, best_score, best_prompt = start + j, score, prompts[j].clone()
    if best_i < 0:
        raise ValueError("evaluate: every candidate scored NaN")
    return CoefficientSearch(cands[best_i], best_score, table, maximize, best_prompt)


# ---- learned coefficients --------------------------------------------------------------------
class MixingCoefficients(nn.Module):
    """Learnable mixing coefficients over a frozen bank of task prompt vectors.

    ``forward()`` returns ``base + sum_t w_t tau_t`` (L, d) through :func:`fastprompt.combine`, with
    w = the raw coefficients (``parametrization="raw"``) or softmax(logits) * scale
    (``"softmax"``: a convex combination, scaled by ``scale``, default 1).

    Args:
        vectors: task prompt vectors (list or bank tensor (T, L, d)); stored as a buffer.
        base: the prompt the combination is added to (e.g. a random init); buffer, optional.
        init_coefs: starting coefficients (raw) or starting weights (softmax: their log is
            the starting logits); default 1/T each.
    """

    def __init__(self, vectors, base: Optional[torch.Tensor] = None, init_coefs=None,
                 parametrization: str = "raw", scale: float = 1.0):
        super().__init__()
        if parametrization not in ("raw", "softmax"):
            raise ValueError(f"parametrization: expected 'raw' or 'softmax', got {parametrization!r}")
        bank = vector_bank(vectors).detach()
        if base is not None and base.shape != bank.shape[1:]:
            raise ValueError(f"base: expected shape {tuple(bank.shape[1:])}, got {tuple(base.shape)}")
        self.register_buffer("bank", bank.clone())
        self.register_buffer("base", None if base is None else base.detach().to(bank).clone())
        self.parametrization = parametrization
        self.scale = float(scale)
        count = bank.shape[0]
        start = torch.full((count,), 1.0 / count, dtype=torch.float32) if init_coefs is None else \
            coefficient_tensor(init_coefs, count, torch.empty(0, dtype=torch.float32)).clone()
        if parametrization == "raw":
            self.coefficients = nn.Parameter(start.to(bank.device))
        else:
            if (start <= 0).any():
                raise ValueError("init_coefs: softmax weights must be positive")
            self.logits = nn.Parameter(torch.log(start / start.sum()).to(bank.device))

    @property
    def num_vectors(self) -> int:
        return self.bank.shape[0]

    def weights(self) -> torch.Tensor:
        if self.parametrization == "raw":
            return self.coefficients
        return torch.softmax(self.logits, dim=0) * self.scale

    def forward(self) -> torch.Tensor:
        import fastprompt

        return fastprompt.combine(self.bank, self.weights(), base=self.base)

    def extra_repr(self) -> str:
        return f"num_vectors={self.num_vectors}, prompt_shape={tuple(self.bank.shape[1:])}, " \
               f"parametrization={self.parametrization!r}"


@dataclass
class LearnedCoefficients:
    coefficients: Tuple[float, ...]
    prompt: torch.Tensor
    losses: List[float]
    module: MixingCoefficients = field(repr=False)


def learn_coefficients(init: torch.Tensor, vectors, objective: Optional[Objective] = None, *,
                       model: Optional[nn.Module] = None, batches=None, loss_fn=None, steps: int = 50,
                       lr: float = 0.05, parametrization: str = "raw", init_coefs=None,
                       optimizer: str = "adam") -> LearnedCoefficients:
    """Train :class:`MixingCoefficients` over ``vectors`` (base ``init``) to minimise ``objective``
    (or the loss of ``model`` on ``batches``) for ``steps`` full-batch steps."""
    if objective is None:
        if model is None or batches is None:
            raise ValueError("objective: pass a loss callable, or model and batches")
        objective = prompt_objective(model, batches, loss_fn=loss_fn)
    if steps < 0:
        raise ValueError(f"steps: expected a non-negative number of steps, got {steps}")
    mixer = MixingCoefficients(vectors, base=init, init_coefs=init_coefs, parametrization=parametrization)
    mixer.to(init.device)
    from fastprompt.methods.training import make_optimizer, optimize

    opt = make_optimizer(list(mixer.parameters()), optimizer, lr)
    losses = optimize(lambda _: objective(mixer()), opt, range(steps))
    with torch.no_grad():
        prompt = mixer().detach()
        coefs = tuple(float(c) for c in mixer.weights().detach().cpu())
    return LearnedCoefficients(coefs, prompt, losses, mixer)
