"""The transfer experiment of task prompt vectors, small enough for a unit test or a demo.

Prompt-tune a frozen model on source tasks from random inits, take their task prompt vectors,
and start a new, similar target task from ``init + sum_t c_t tau_t``; compare its loss with
that of a plain random init (before and after a few steps of training).

Run the demo with ``python -m fastprompt.vectors.experiment`` (a tiny random LLaMA and the
generated sentiment family; prints a table).
"""
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from fastprompt.vectors.coefficients import prompt_objective
from fastprompt.vectors.init import init_from_vectors, random_init
from fastprompt.vectors.vector import TaskPromptVector


def tune_prompt(objective: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor, steps: int = 100,
                lr: float = 0.1, optimizer: str = "adam"):
    """Plain prompt tuning of a prompt tensor on ``objective(prompt) -> loss`` (full batch).

    Returns (tuned prompt, losses before each step)."""
    if steps < 0:
        raise ValueError(f"steps: expected a non-negative number of steps, got {steps}")
    prompt = torch.nn.Parameter(init.detach().clone())
    if optimizer == "adam":
        opt = torch.optim.Adam([prompt], lr=lr)
    elif optimizer == "sgd":
        opt = torch.optim.SGD([prompt], lr=lr)
    else:
        raise ValueError(f"optimizer: expected 'adam' or 'sgd', got {optimizer!r}")
    losses = []
    for _ in range(steps):
        opt.zero_grad(set_to_none=True)
        loss = objective(prompt)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return prompt.detach(), losses


@dataclass
class TransferResult:
    vectors: List[TaskPromptVector]
    source_losses: Dict[str, List[float]]
    target_init_loss: Dict[str, float]               # {"random": ..., "vectors": ...} before training
    target_losses: Dict[str, List[float]] = field(default_factory=dict)   # training curves

    def summary(self) -> str:
        lines = [f"{'init':>10} {'loss at init':>14} {'after training':>15}"]
        for k, v in self.target_init_loss.items():
            curve = self.target_losses.get(k)
            after = f"{curve[-1]:.4f}" if curve else "-"
            lines.append(f"{k:>10} {v:>14.4f} {after:>15}")
        return "\n".join(lines)


def transfer_experiment(model, source_batches: Dict[str, Sequence[Dict]], target_batches: Sequence[Dict],
                        prompt_length: int = 4, source_seeds: Optional[Sequence[int]] = None,
                        target_seed: int = 1000, steps: int = 60, lr: float = 0.1, target_steps: int = 0,
                        coefs=None, init_std: float = 1.0, base_model: Optional[str] = None) -> TransferResult:
    """Tune a prompt per source task, form the task prompt vectors, and compare the target's
    loss from ``init + sum_t coefs[t] tau_t`` (default coefs 1/T: the mean vector) with its loss
    from the same random init.

    model: a frozen model :func:`fastprompt.vectors.prompt_objective` understands (a transformers
    model, or a prompt-tuning model holding a SoftPrompt); source_batches: {task: batches};
    target_batches: batches of the target task; source_seeds: init seed of each source task
    (default 0, 1, ...); target_steps: also train both target inits for that many steps.
    """
    names = list(source_batches)
    if not names:
        raise ValueError("source_batches: expected at least one source task")
    seeds = list(source_seeds) if source_seeds is not None else list(range(len(names)))
    if len(seeds) != len(names):
        raise ValueError(f"source_seeds: expected one seed per source task ({len(names)}), got {len(seeds)}")
    param = next(model.parameters())
    dim = model.get_input_embeddings().weight.shape[1] if hasattr(model, "get_input_embeddings") else None
    if dim is None:
        raise ValueError("model: cannot tell the embedding size (no get_input_embeddings())")
    vectors, source_losses = [], {}
    for name, seed in zip(names, seeds):
        init = random_init(prompt_length, dim, seed, std=init_std, device=param.device)
        tuned, losses = tune_prompt(prompt_objective(model, source_batches[name]), init, steps=steps, lr=lr)
        vectors.append(TaskPromptVector.from_tensors(tuned, init, task=name, init_seed=seed, base_model=base_model))
        source_losses[name] = losses
    if coefs is None:
        coefs = [1.0 / len(vectors)] * len(vectors)
    target = prompt_objective(model, target_batches)
    init = random_init(prompt_length, dim, target_seed, std=init_std, device=param.device)
    starts = {"random": init, "vectors": init_from_vectors(init, vectors, coefs).detach()}
    with torch.no_grad():
        init_loss = {k: float(target(p)) for k, p in starts.items()}
    curves = {}
    if target_steps:
        for k, p in starts.items():
            curves[k] = tune_prompt(target, p, steps=target_steps, lr=lr)[1]
    return TransferResult(vectors, source_losses, init_loss, curves)


def tiny_llama(vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0,
               initializer_range: float = 0.2):
    """A tiny randomly initialised LLaMA causal LM (frozen, eval mode) for tests and demos."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=heads,
                         max_position_embeddings=64, initializer_range=initializer_range, pad_token_id=0, bos_token_id=1, eos_token_id=1)
    model = LlamaForCausalLM(config).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def main():  # pragma: no cover - a demo
    from fastprompt.vectors import tasks as T

    vocab = T.vocabulary()
    family = T.sentiment_family(3, seed=0, num_train=64, num_validation=32)
    model = tiny_llama(vocab.size)
    src = {t.name: T.batches(T.encode(t.train, t, vocab), 64) for t in family[:2]}
    tgt = T.batches(T.encode(family[2].validation, family[2], vocab), 64)
    result = transfer_experiment(model, src, tgt, steps=80, target_steps=20)
    print(f"target task {family[2].name}, sources {list(src)}")
    print(result.summary())


if __name__ == "__main__":  # pragma: no cover
    main()
