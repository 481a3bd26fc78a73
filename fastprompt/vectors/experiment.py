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

from fastprompt.methods.training import make_optimizer, optimize

from fastprompt.vectors.vector import TaskPromptVector


def tune_prompt(objective: Callable[[torch.Tensor], torch.Tensor], init: torch.Tensor, steps: int = 100,
                lr: float = 0.1, optimizer: str = "adam"):
    """Plain prompt tuning of a prompt tensor on ``objective(prompt) -> loss`` (full batch).

    Returns (tuned prompt, losses before each step)."""
    if steps < 0:
        raise ValueError(f"steps: expected a non-negative number of steps, got {steps}")
    prompt = torch.nn.Parameter(init.detach().clone())
    losses = optimize(lambda _: objective(prompt), make_optimizer([prompt], optimizer, lr), range(steps))
    return prompt.detach(), losses


def train_prompt_tuning(model, batches: Sequence[Dict], steps: int = 60, lr: float = 0.3) -> List[float]:
    """Plain prompt tuning of a :class:`fastprompt.methods.PromptTuningModel` (or any model with
    ``trainable_parameters()`` returning an output with ``.loss``): Adam, cycling over
    ``batches``. Returns the loss of each step."""
    if steps < 0:
        raise ValueError(f"steps: expected a non-negative number of steps, got {steps}")
    batches = list(batches)
    if not batches:
        raise ValueError("batches: expected at least one batch")
    params = model.trainable_parameters() if hasattr(model, "trainable_parameters") else \
        [p for p in model.parameters() if p.requires_grad]
    return optimize(lambda step: model(**batches[step % len(batches)]).loss, torch.optim.Adam(params, lr=lr),
                    range(steps))


@torch.no_grad()
def evaluate_loss(model, batches: Sequence[Dict]) -> float:
    """Mean loss of ``model`` over ``batches``."""
    batches = list(batches)
    if not batches:
        raise ValueError("batches: expected at least one batch")
    return sum(float(model(**b).loss) for b in batches) / len(batches)


def tune_vector(model, batches: Sequence[Dict], task: str, seed: int, prompt_length: int = 4, steps: int = 60,
                lr: float = 0.3, base_model: Optional[str] = None):
    """Prompt-tune ``model`` on ``batches`` with :class:`fastprompt.methods.PromptTuningModel`
    from the random init of ``seed``; returns (its task prompt vector, the training losses)."""
    from fastprompt.methods import PromptTuningConfig, PromptTuningModel

    tuned = PromptTuningModel(model, PromptTuningConfig(num_virtual_tokens=prompt_length, init="random", seed=seed))
    init = tuned.prompt().detach().clone()
    losses = train_prompt_tuning(tuned, batches, steps=steps, lr=lr)
    vector = TaskPromptVector.from_tensors(tuned.prompt(), init, task=task, init_seed=seed, base_model=base_model)
    return vector, losses


def tune_vectors(model, task_batches: Dict[str, Sequence[Dict]], seeds: Sequence[int] = (0,), **kwargs):
    """The task prompt vector of every task for every init seed (:func:`tune_vector`); the list
    :func:`fastprompt.vectors.across_tasks` / :func:`~fastprompt.vectors.across_inits` compare."""
    return [tune_vector(model, batches, name, seed, **kwargs)[0]
            for seed in seeds for name, batches in task_batches.items()]


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
                        target_seed: int = 1000, steps: int = 60, lr: float = 0.3, target_steps: int = 0,
                        coefs=None, base_model: Optional[str] = None) -> TransferResult:
    """Prompt-tune ``model`` (a frozen transformers model) on each source task with
    :class:`fastprompt.methods.PromptTuningModel` (random init, seeded), form the task prompt
    vectors, and compare the target task's loss from a random init (seed ``target_seed``) with
    its loss from that init plus ``sum_t coefs[t] tau_t`` (default coefs 1/T: the mean vector),
    built with :func:`fastprompt.vectors.prompt_tuning_from_vectors`.

    source_batches: {task: batches}; target_batches: batches of the target task; source_seeds:
    init seed of each source task (default 0, 1, ...); target_steps: also train both target
    models for that many steps (curves in ``target_losses``).
    """
    from fastprompt.methods import PromptTuningConfig, PromptTuningModel
    from fastprompt.vectors.init import prompt_tuning_from_vectors

    names = list(source_batches)
    if not names:
        raise ValueError("source_batches: expected at least one source task")
    seeds = list(source_seeds) if source_seeds is not None else list(range(len(names)))
    if len(seeds) != len(names):
        raise ValueError(f"source_seeds: expected one seed per source task ({len(names)}), got {len(seeds)}")
    vectors, source_losses = [], {}
    for name, seed in zip(names, seeds):
        vector, losses = tune_vector(model, source_batches[name], name, seed, prompt_length=prompt_length,
                                     steps=steps, lr=lr, base_model=base_model)
        vectors.append(vector)
        source_losses[name] = losses
    if coefs is None:
        coefs = [1.0 / len(vectors)] * len(vectors)
    random_start = PromptTuningModel(model, PromptTuningConfig(num_virtual_tokens=prompt_length, init="random",
                                                               seed=target_seed))
    init = random_start.prompt().detach().clone()
    starts = {"random": random_start, "vectors": prompt_tuning_from_vectors(model, init, vectors, coefs)}
    init_loss = {k: evaluate_loss(m, target_batches) for k, m in starts.items()}
    curves = {}
    if target_steps:
        curves = {k: train_prompt_tuning(m, target_batches, steps=target_steps, lr=lr) for k, m in starts.items()}
    return TransferResult(vectors, source_losses, init_loss, curves)


def tiny_llama(vocab_size: int, hidden: int = 32, layers: int = 2, heads: int = 4, seed: int = 0,
               initializer_range: float = 0.2, kv_heads: Optional[int] = None, max_positions: int = 64,
               eos_token_id: int = 1, frozen: bool = True):
    """A tiny randomly initialised LLaMA causal LM (eval mode; frozen unless ``frozen=False``) for
    tests and demos: pad id 0, bos id 1."""
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(vocab_size=vocab_size, hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=layers, num_attention_heads=heads, num_key_value_heads=kv_heads or heads,
                         max_position_embeddings=max_positions, initializer_range=initializer_range, pad_token_id=0,
                         bos_token_id=1, eos_token_id=eos_token_id)
    model = LlamaForCausalLM(config).eval()
    if frozen:
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
    result = transfer_experiment(model, src, tgt, steps=40, target_steps=10)
    print(f"target task {family[2].name}, sources {list(src)}")
    print(result.summary())
    # choose the coefficients on the target's validation batches instead of the plain mean
    from fastprompt.methods import PromptTuningConfig, PromptTuningModel
    from fastprompt.vectors.coefficients import grid_search_coefficients, learn_coefficients

    scorer = PromptTuningModel(model, PromptTuningConfig(num_virtual_tokens=4, init="random", seed=1000))
    init = scorer.prompt().detach().clone()
    search = grid_search_coefficients(init, result.vectors, model=scorer, batches=tgt, grid=[0, 0.25, 0.5, 1, 1.5])
    print(f"grid search: best coefficients {search.best}, loss {search.best_score:.4f} "
          f"({len(search.table)} candidates)")
    learned = learn_coefficients(init, result.vectors, model=scorer, batches=tgt, steps=30, lr=0.1)
    print(f"learned coefficients {tuple(round(c, 3) for c in learned.coefficients)}, "
          f"loss {learned.losses[0]:.4f} -> {learned.losses[-1]:.4f}")
    # related tasks have similar vectors, unrelated ones do not (cosine, averaged over 2 init seeds)
    from fastprompt.vectors.compare import across_inits, across_tasks

    topic = T.topic_family(1, seed=0, num_train=64)[0]
    batches = {t.name: T.batches(T.encode(t.train, t, vocab), 64) for t in family + [topic]}
    vectors = tune_vectors(model, batches, seeds=(0, 1), steps=40)
    print(across_tasks(vectors, "cosine"))
    for task, table in across_inits(vectors, "cosine").items():
        print(f"{task}: cosine between the vectors of init seeds 0 and 1: {table.matrix[0, 1]:.3f}")


if __name__ == "__main__":  # pragma: no cover
    main()
