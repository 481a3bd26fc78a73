"""Initialising prompt tuning from task prompt vectors.

The paper's recipe: for a new task similar to tasks 1..T, start prompt tuning from
``P_init + sum_t c_t tau_t`` instead of a random prompt. :func:`init_from_vectors` computes that
prompt with one :func:`fastprompt.combine` call; :func:`soft_prompt_from_vectors` and
:func:`prompt_tuning_from_vectors` build a trainable soft prompt / a prompt-tuning model that
starts from it (PEFT's prompt tuning can only start from random, vocabulary or text).
"""
from typing import Optional, Sequence, Union

import torch

from fastprompt.methods.prompt_init import embedding_std as table_std
from fastprompt.methods.prompt_init import random_prompt, vocab_prompt
from fastprompt.vectors.vector import TaskPromptVector, as_vector_list

Vectors = Union[TaskPromptVector, Sequence[TaskPromptVector], torch.Tensor]


def random_init(num_tokens: int, dim: int, seed: int, std: float = 1.0, dtype=torch.float32,
                device=None) -> torch.Tensor:
    """A reproducible random prompt (num_tokens, dim): N(0, std^2) drawn on the CPU from a
    generator seeded with ``seed`` (the same numbers on every device).

    With ``std = embedding_std(model)`` this is exactly the ``init="random"`` prompt of
    :class:`fastprompt.methods.PromptTuningModel` with ``seed=seed``."""
    if num_tokens <= 0 or dim <= 0:
        raise ValueError(f"num_tokens, dim: expected positive sizes, got {num_tokens}, {dim}")
    return random_prompt(num_tokens, dim, int(seed), std).to(device=device, dtype=dtype)


def embedding_std(model) -> float:
    """Standard deviation of a transformers model's word embeddings (the scale of fastprompt's
    random prompt init)."""
    if not hasattr(model, "get_input_embeddings"):
        raise ValueError(f"model: {type(model).__name__} has no get_input_embeddings()")
    return table_std(model.get_input_embeddings().weight)


def regenerate_init(num_tokens: int, dim: int, seed: int, kind: str = "random", model=None,
                    std: Optional[float] = None, device=None) -> torch.Tensor:
    """The init prompt-tuning started from, rebuilt from its seed, as
    :class:`fastprompt.methods.PromptTuningModel` draws it: ``kind`` "random" (normal with the
    std of ``model``'s word embeddings, or ``std``) or "vocab" (rows of ``model``'s word
    embeddings sampled with the seed). Text and tensor inits cannot be rebuilt from a seed."""
    if kind == "random":
        if std is None:
            if model is None:
                raise ValueError(f"init_std: rebuilding the random init of seed {seed} needs the standard deviation "
                                 "it was drawn with: pass model (the backbone) or init_std")
            std = embedding_std(model)
        return random_init(num_tokens, dim, seed, std=std, device=device)
    if kind == "vocab":
        if model is None:
            raise ValueError(f"model: rebuilding the vocabulary-sampled init of seed {seed} needs the backbone")
        table = model.get_input_embeddings().weight
        if table.shape[1] != dim:
            raise ValueError(f"model: its embeddings have width {table.shape[1]}, the prompt {dim}")
        return vocab_prompt(table, num_tokens, int(seed)).to(device if device is not None else table.device)
    raise ValueError(f"init: a {kind!r} init cannot be rebuilt from a seed; pass init (the tensor, or a "
                     "checkpoint saved before training)")


def vector_bank(vectors: Vectors, name: str = "vectors") -> torch.Tensor:
    """(T, L, d) bank from a list of vectors, one vector, or a tensor (T, L, d) / (L, d)."""
    if isinstance(vectors, torch.Tensor):
        if vectors.dim() == 2:
            vectors = vectors.unsqueeze(0)
        if vectors.dim() != 3 or not vectors.is_floating_point():
            raise ValueError(f"{name}: expected a floating bank (T, L, d), got shape {tuple(vectors.shape)} "
                             f"and dtype {vectors.dtype}")
        if vectors.shape[0] == 0:
            raise ValueError(f"{name}: expected at least one task prompt vector")
        return vectors
    return TaskPromptVector.stack(as_vector_list(vectors, name), name)


def coefficient_tensor(coefs, count: int, like: torch.Tensor, name: str = "coefs") -> torch.Tensor:
    """coefs as a (count,) tensor: None -> ones (plain addition), a number -> that for each."""
    if coefs is None:
        return torch.ones(count, dtype=like.dtype, device=like.device)
    if isinstance(coefs, (int, float)) and not isinstance(coefs, bool):
        return torch.full((count,), float(coefs), dtype=like.dtype, device=like.device)
    c = torch.as_tensor(coefs)
    if c.dim() == 0:
        c = c.expand(count)
    if c.dim() != 1 or c.shape[0] != count:
        raise ValueError(f"{name}: expected one coefficient per vector ({count}), got shape {tuple(c.shape)}")
    return c.to(device=like.device, dtype=like.dtype)


def init_from_vectors(init: torch.Tensor, vectors: Vectors, coefs=None) -> torch.Tensor:
    """``init + sum_t coefs[t] * tau_t`` (L, d), in init's dtype and device.

    init: the prompt to start from (e.g. a random init, :func:`random_init`); vectors: task
    prompt vectors (a list, one vector, or a bank tensor (T, L, d)); coefs: one per vector
    (default 1 each; a number applies to all). Differentiable in init and coefs."""
    if not isinstance(init, torch.Tensor):
        raise TypeError(f"init: expected a torch.Tensor, got {type(init).__name__}")
    bank = vector_bank(vectors)
    if init.shape != bank.shape[1:]:
        raise ValueError(f"init: expected the vectors' prompt shape {tuple(bank.shape[1:])}, got {tuple(init.shape)}")
    if not init.is_floating_point():
        raise ValueError(f"init: expected a floating tensor, got {init.dtype}")
    import fastprompt

    bank = bank.to(device=init.device, dtype=init.dtype)
    w = coefficient_tensor(coefs, bank.shape[0], init)
    return fastprompt.combine(bank, w, base=init)


def soft_prompt_from_vectors(init: torch.Tensor, vectors: Vectors, coefs=None):
    """A trainable :class:`fastprompt.nn.SoftPrompt` starting from :func:`init_from_vectors`."""
    from fastprompt.nn import SoftPrompt

    return SoftPrompt.from_tensor(init_from_vectors(init, vectors, coefs).detach().clone())


def prompt_tuning_from_vectors(model, init: torch.Tensor, vectors: Vectors, coefs=None, config=None,
                               **config_kwargs):
    """A :class:`fastprompt.methods.PromptTuningModel` on ``model`` whose prompt starts from
    :func:`init_from_vectors` (``init="tensor"``); ``config`` / ``config_kwargs`` give the other
    prompt-tuning options (the number of virtual tokens is the vectors' prompt length)."""
    from dataclasses import replace

    from fastprompt.methods import PromptTuningConfig, PromptTuningModel

    start = init_from_vectors(init, vectors, coefs).detach().clone()
    if config is None:
        config = PromptTuningConfig(num_virtual_tokens=start.shape[0], init="tensor", init_tensor=start,
                                    **config_kwargs)
    else:
        config = replace(config, num_virtual_tokens=start.shape[0], init="tensor", init_tensor=start, **config_kwargs)
    return PromptTuningModel(model, config)
