"""Held-out accuracy of a model on a shipped (or any) labelled task.

* :func:`choice_accuracy`: instruction tasks answered by one word (decoders): the prediction is the
  label word whose first token has the largest logit after the prompt (constrained to the label
  words; no generation needed, one forward per batch).
* :func:`classification_accuracy`: sequence classifiers (argmax of the logits).

Both call ``model(**batch)`` with the batch keys the model's ``forward`` names (``instruction_mask``
goes only to models that take it, e.g. IAPT), so they work for fastprompt's wrappers, PEFT models
and plain transformers models.
"""
import inspect
from typing import Dict, List, Optional, Sequence

import torch


def model_inputs(model, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    """The entries of ``batch`` that ``model.forward`` names (all of them for ``**kwargs`` except
    ``instruction_mask``, which only models that name it receive)."""
    params = inspect.signature(model.forward).parameters
    named = {n for n, p in params.items() if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    var_kw = any(p.kind == p.VAR_KEYWORD for p in params.values())
    out = {}
    for key, value in batch.items():
        if key in named or (var_kw and key != "instruction_mask"):
            out[key] = value
    return out


def _device(model):
    return next(model.parameters()).device


def first_token_ids(tokenizer, words: Sequence[str]) -> List[int]:
    """The first token of each answer word as the chat template puts it (at the start of the
    assistant turn, no leading space); ValueError when two words share their first token."""
    ids = [tokenizer(w, add_special_tokens=False)["input_ids"][0] for w in words]
    if len(set(ids)) != len(ids):
        raise ValueError(f"words: {list(words)} do not start with distinct tokens ({ids})")
    return [int(i) for i in ids]


@torch.no_grad()
def choice_accuracy(model, collator, examples: Sequence[dict], choices: Sequence[str], label_key: str = "label",
                    batch_size: int = 16, return_predictions: bool = False):
    """Accuracy of ``model`` on ``examples`` (dicts with ``prompt`` and an integer ``label``),
    predicting the choice whose first token has the largest next-token logit after the prompt
    (the logits of the last real token, so either padding side works)."""
    ids = torch.tensor(first_token_ids(collator.tokenizer, choices))
    was_training = model.training
    model.eval()
    predictions, labels = [], []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = [examples[i] for i in range(start, min(start + batch_size, len(examples)))]
            batch = collator([{"prompt": e["prompt"]} for e in chunk])
            batch = {k: v.to(_device(model)) for k, v in batch.items()}
            logits = model(**model_inputs(model, batch)).logits
            mask = batch["attention_mask"]
            last = (torch.arange(mask.shape[1], device=mask.device) * (mask != 0)).argmax(-1)
            final = logits[torch.arange(len(chunk), device=logits.device), last]
            predictions += final[:, ids.to(final.device)].argmax(-1).tolist()
            labels += [int(e[label_key]) for e in chunk]
    finally:
        model.train(was_training)
    accuracy = sum(p == y for p, y in zip(predictions, labels)) / max(1, len(labels))
    return (accuracy, predictions) if return_predictions else accuracy


@torch.no_grad()
def classification_accuracy(model, collator, examples: Sequence[dict], label_key: str = "label",
                            batch_size: int = 32, return_predictions: bool = False):
    """Accuracy of a sequence classifier on ``examples`` (dicts with the collator's text field and
    an integer ``label``)."""
    was_training = model.training
    model.eval()
    predictions, labels = [], []
    try:
        for start in range(0, len(examples), batch_size):
            chunk = [dict(examples[i]) for i in range(start, min(start + batch_size, len(examples)))]
            labels += [int(e[label_key]) for e in chunk]
            batch = collator([{k: v for k, v in e.items() if k != label_key} for e in chunk])
            batch = {k: v.to(_device(model)) for k, v in batch.items()}
            predictions += model(**model_inputs(model, batch)).logits.argmax(-1).tolist()
    finally:
        model.train(was_training)
    accuracy = sum(p == y for p, y in zip(predictions, labels)) / max(1, len(labels))
    return (accuracy, predictions) if return_predictions else accuracy


@torch.no_grad()
def generate_answers(model, collator, prompts: Sequence[str], max_new_tokens: int = 6,
                     tokenizer=None) -> List[str]:
    """Greedy answers of a decoder to ``prompts`` (left-padded batch; the decoded new tokens,
    special tokens removed)."""
    tokenizer = tokenizer or collator.tokenizer
    batch = collator.prompts(prompts, padding_side="left")
    batch = {k: v.to(_device(model)) for k, v in batch.items()}
    kwargs = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                  max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=collator.pad_token_id)
    if "instruction_mask" in inspect.signature(model.generate).parameters:
        kwargs["instruction_mask"] = batch["instruction_mask"]
    was_training = model.training
    model.eval()
    try:
        out = model.generate(**kwargs)
    finally:
        model.train(was_training)
    new = out[:, batch["input_ids"].shape[1]:]
    return [tokenizer.decode(row, skip_special_tokens=True).strip() for row in new]
