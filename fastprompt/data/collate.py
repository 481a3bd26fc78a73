"""Batches for instruction tuning and classification from a tokenizer's own chat template.

:class:`InstructionCollator` turns (prompt, response) pairs or chat messages into
``input_ids``, ``attention_mask``, ``instruction_mask`` (True on the instruction tokens) and
``labels`` (-100 everywhere except the response), padded on the tokenizer's padding side.
:class:`ClassificationCollator` turns (text, label) examples into a BERT-style classification
batch. Both are plain callables on a list of examples, so they work as ``data_collator`` of
``transformers.Trainer`` and as ``collate_fn`` of a ``torch.utils.data.DataLoader``.
"""
from typing import Any, Dict, List, Optional, Sequence

import torch

IGNORE_INDEX = -100


def _ids(encoded) -> List[int]:
    """Token ids from what a tokenizer / apply_chat_template returns (list, BatchEncoding, tensor)."""
    if hasattr(encoded, "keys") and "input_ids" in encoded:
        encoded = encoded["input_ids"]
    if isinstance(encoded, torch.Tensor):
        encoded = encoded.tolist()
    if encoded and isinstance(encoded[0], list):
        if len(encoded) != 1:
            raise ValueError("expected the ids of one sequence")
        encoded = encoded[0]
    return [int(i) for i in encoded]


def pad_batch(rows: Sequence[Dict[str, List[int]]], pad_values: Dict[str, int], side: str = "right",
              pad_to_multiple_of: Optional[int] = None) -> Dict[str, torch.Tensor]:
    """Pads every key of ``rows`` (lists of equal length per row) to the longest row with
    ``pad_values[key]`` on ``side`` ("left" or "right") and stacks them into tensors; keys whose
    pad value is a bool become bool tensors."""
    if side not in ("left", "right"):
        raise ValueError(f"padding_side: expected 'left' or 'right', got {side!r}")
    if not rows:
        raise ValueError("features: expected at least one example")
    length = max(len(r["input_ids"]) for r in rows)
    if pad_to_multiple_of:
        length = -(-length // pad_to_multiple_of) * pad_to_multiple_of
    out = {}
    for key, pad in pad_values.items():
        if key not in rows[0]:
            continue
        padded = []
        for r in rows:
            values = list(r[key])
            fill = [pad] * (length - len(values))
            padded.append(fill + values if side == "left" else values + fill)
        out[key] = torch.tensor(padded, dtype=torch.bool if isinstance(pad, bool) else torch.long)
    return out


class InstructionCollator:
    """(prompt, response) pairs or chat messages -> a padded instruction-tuning batch.

    Args:
        tokenizer: a transformers tokenizer. Its chat template is used when it has one (a
            sequence then reads exactly as ``tokenizer.apply_chat_template`` renders the
            conversation, including the template's default system prompt); without one the
            prompt and the response are concatenated (see ``separator``).
        use_chat_template: ``None`` (default): use the template if the tokenizer has one;
            ``False``: always concatenate; ``True``: require a template (ValueError without).
        system_prompt: a system message put before every conversation (``None``: the template's
            own default, if any).
        max_length: longest sequence; longer examples lose the start of their prompt first
            (the response is kept whole while it fits), then the end of the response.
        padding_side: ``"left"`` / ``"right"``; default the tokenizer's ``padding_side``.
        separator: between prompt and response when concatenating without a template.
        add_eos: without a template, append the tokenizer's EOS token to the response (a
            template closes the assistant turn itself; the labels then end with its end-of-turn
            token, e.g. ``<|im_end|>``, and whatever the template renders after it is dropped).
        pad_to_multiple_of: round the padded length up to a multiple of this.

    Examples (dicts) may hold:

    * ``prompt`` and ``response`` (strings): one user turn and the assistant's answer;
    * ``messages``: a chat (list of ``{"role", "content"}``), the last message being the
      assistant's answer; every earlier message is instruction;
    * ``prompt`` alone (or ``messages`` ending with a user turn): a generation batch, the
      sequence ends with the template's generation prompt, and there are no labels;
    * ``input_ids`` (and optionally ``labels``, ``instruction_mask``, ``attention_mask``),
      already encoded with :meth:`encode` (e.g. by ``datasets.Dataset.map``): only padded.

    A batch holds ``input_ids``, ``attention_mask`` (long), ``instruction_mask`` (bool: True on
    every token before the response, i.e. the rendered conversation up to and including the
    generation prompt; False on the response and the padding) and ``labels`` (the response
    tokens, -100 elsewhere). transformers' Trainer drops dataset columns that the model's
    ``forward`` does not name; keep raw text columns with ``remove_unused_columns=False``, or
    encode first: ``dataset.map(collator.encode, remove_columns=dataset.column_names)``.
    """

    def __init__(self, tokenizer, use_chat_template: Optional[bool] = None, system_prompt: Optional[str] = None,
                 max_length: Optional[int] = None, padding_side: Optional[str] = None, separator: str = "\n",
                 add_eos: bool = True, pad_to_multiple_of: Optional[int] = None):
        self.tokenizer = tokenizer
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if use_chat_template and not has_template:
            raise ValueError("use_chat_template: the tokenizer has no chat template (set use_chat_template=None or "
                             "False to concatenate prompt and response)")
        self.use_chat_template = has_template if use_chat_template is None else bool(use_chat_template)
        self.system_prompt = system_prompt
        if max_length is not None and (not isinstance(max_length, int) or max_length < 2):
            raise ValueError(f"max_length: expected an int >= 2 or None, got {max_length!r}")
        self.max_length = max_length
        self.padding_side = padding_side or getattr(tokenizer, "padding_side", "right") or "right"
        if self.padding_side not in ("left", "right"):
            raise ValueError(f"padding_side: expected 'left' or 'right', got {self.padding_side!r}")
        self.separator = separator
        self.add_eos = add_eos
        self.pad_to_multiple_of = pad_to_multiple_of
        pad = tokenizer.pad_token_id
        if pad is None:
            pad = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.pad_token_id = int(pad)

    # ---- one example -------------------------------------------------------------------------
    def _messages(self, example: Dict[str, Any]) -> List[Dict[str, str]]:
        if "messages" in example:
            messages = list(example["messages"])
            if not messages or not all(isinstance(m, dict) and "role" in m and "content" in m for m in messages):
                raise ValueError("messages: expected a non-empty list of {'role': ..., 'content': ...} dicts")
        elif "prompt" in example:
            messages = [{"role": "user", "content": str(example["prompt"])}]
            if example.get("response") is not None:
                messages.append({"role": "assistant", "content": str(example["response"])})
        else:
            raise ValueError(f"features: an example needs 'prompt' (and 'response'), 'messages' or 'input_ids'; got "
                             f"keys {sorted(example)}")
        if self.system_prompt is not None and messages[0]["role"] != "system":
            messages = [{"role": "system", "content": self.system_prompt}] + messages
        return messages

    def _render(self, messages, generation_prompt: bool) -> List[int]:
        return _ids(self.tokenizer.apply_chat_template(messages, tokenize=True,
                                                       add_generation_prompt=generation_prompt))

    def _encode_chat(self, messages):
        if messages[-1]["role"] != "assistant":
            return self._render(messages, True), []
        prompt = self._render(messages[:-1], True)
        full = self._render(messages, False)
        if full[:len(prompt)] != prompt:
            raise ValueError("the tokenizer's chat template does not render the conversation without its last "
                             "answer as a prefix of the whole conversation; encode these examples yourself")
        response = full[len(prompt):]
        eos = self.tokenizer.eos_token_id
        if eos is not None and eos in response:  # drop what follows the end of the turn (e.g. "\n")
            response = response[:response.index(eos) + 1]
        return prompt, response

    def _encode_plain(self, messages):
        answer = messages[-1]["content"] if messages[-1]["role"] == "assistant" else None
        context = messages[:-1] if answer is not None else messages
        text = "\n".join(m["content"] for m in context) + self.separator
        prompt = _ids(self.tokenizer(text))
        if answer is None:
            return prompt, []
        response = _ids(self.tokenizer(answer, add_special_tokens=False))
        if self.add_eos and self.tokenizer.eos_token_id is not None:
            response.append(int(self.tokenizer.eos_token_id))
        return prompt, response

    def encode(self, example: Dict[str, Any]) -> Dict[str, List]:
        """One example -> unpadded ``input_ids``, ``attention_mask``, ``instruction_mask`` and
        (when it has a response) ``labels``, as lists (what ``datasets.Dataset.map`` stores)."""
        messages = self._messages(example)
        prompt, response = (self._encode_chat if self.use_chat_template else self._encode_plain)(messages)
        if self.max_length is not None and len(prompt) + len(response) > self.max_length:
            response = response[:self.max_length - 1]
            prompt = prompt[len(prompt) - (self.max_length - len(response)):]
        ids = prompt + response
        out = {"input_ids": ids, "attention_mask": [1] * len(ids),
               "instruction_mask": [True] * len(prompt) + [False] * len(response)}
        if response:
            out["labels"] = [IGNORE_INDEX] * len(prompt) + response
        return out

    # ---- a batch -----------------------------------------------------------------------------
    def __call__(self, features: Sequence[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        rows = []
        for feature in features:
            if "input_ids" in feature:
                ids = _ids(feature["input_ids"])
                row = {"input_ids": ids, "attention_mask": _ids(feature.get("attention_mask", [1] * len(ids)))}
                instr = feature.get("instruction_mask")
                labels = feature.get("labels")
                if labels is not None:
                    row["labels"] = _ids(labels)
                if instr is None:  # instruction = every real token without a label
                    lab = row.get("labels", [IGNORE_INDEX] * len(ids))
                    instr = [bool(m) and l == IGNORE_INDEX for m, l in zip(row["attention_mask"], lab)]
                row["instruction_mask"] = [bool(v) for v in (instr.tolist() if isinstance(instr, torch.Tensor)
                                                              else instr)]
                for key, values in row.items():
                    if len(values) != len(ids):
                        raise ValueError(f"{key}: expected {len(ids)} entries (those of input_ids), got {len(values)}")
            else:
                row = self.encode(feature)
            rows.append(row)
        with_labels = ["labels" in r for r in rows]
        if any(with_labels) and not all(with_labels):
            raise ValueError("features: some examples have a response (labels) and some do not; batch them apart")
        return pad_batch(rows, {"input_ids": self.pad_token_id, "attention_mask": 0, "instruction_mask": False,
                                "labels": IGNORE_INDEX}, self.padding_side, self.pad_to_multiple_of)

    def prompts(self, prompts: Sequence[str], padding_side: str = "left") -> Dict[str, torch.Tensor]:
        """A generation batch (no labels) from prompt strings, padded on the left by default
        (what ``generate`` of a decoder needs)."""
        rows = [self.encode({"prompt": p}) for p in prompts]
        return pad_batch(rows, {"input_ids": self.pad_token_id, "attention_mask": 0, "instruction_mask": False},
                         padding_side, self.pad_to_multiple_of)


class ClassificationCollator:
    """(text, label) examples -> a padded classification batch for encoders (BERT family) or
    decoder sequence classifiers: ``input_ids``, ``attention_mask``, ``token_type_ids`` (when the
    tokenizer makes them), ``labels`` (B,) and, with ``instruction_mask=True``, an
    ``instruction_mask`` equal to the attention mask (the whole text is the instruction, for
    IAPT).

    Args:
        tokenizer: a transformers tokenizer (special tokens such as ``[CLS]``/``[SEP]`` are added
            as the tokenizer does).
        text_key, text_pair_key, label_key: the example fields.
        max_length: truncate longer texts (default: the tokenizer's ``model_max_length`` where
            it is a sane number).
        padding_side: default the tokenizer's.

    Examples already holding ``input_ids`` are only padded.
    """

    def __init__(self, tokenizer, text_key: str = "text", label_key: str = "label",
                 text_pair_key: Optional[str] = None, max_length: Optional[int] = None,
                 padding_side: Optional[str] = None, instruction_mask: bool = False,
                 pad_to_multiple_of: Optional[int] = None):
        self.tokenizer = tokenizer
        self.text_key, self.label_key, self.text_pair_key = text_key, label_key, text_pair_key
        limit = getattr(tokenizer, "model_max_length", None)
        self.max_length = max_length or (int(limit) if limit and limit < 100_000 else None)
        self.padding_side = padding_side or getattr(tokenizer, "padding_side", "right") or "right"
        self.instruction_mask = instruction_mask
        self.pad_to_multiple_of = pad_to_multiple_of
        pad = tokenizer.pad_token_id
        self.pad_token_id = int(pad if pad is not None else (tokenizer.eos_token_id or 0))

    def encode(self, example: Dict[str, Any]) -> Dict[str, List]:
        if self.text_key not in example:
            raise ValueError(f"features: an example needs {self.text_key!r} (or 'input_ids'); got keys {sorted(example)}")
        args = [example[self.text_key]]
        if self.text_pair_key:
            args.append(example[self.text_pair_key])
        enc = self.tokenizer(*args, truncation=self.max_length is not None, max_length=self.max_length)
        out = {"input_ids": _ids(enc["input_ids"]), "attention_mask": _ids(enc["attention_mask"])}
        if "token_type_ids" in enc:
            out["token_type_ids"] = _ids(enc["token_type_ids"])
        if example.get(self.label_key) is not None:
            out["labels"] = example[self.label_key]
        return out

    def __call__(self, features: Sequence[Dict[str, Any]]) -> Dict[str, torch.Tensor]:
        rows, labels = [], []
        for feature in features:
            if "input_ids" in feature:
                row = {k: _ids(feature[k]) for k in ("input_ids", "attention_mask", "token_type_ids") if k in feature}
                row.setdefault("attention_mask", [1] * len(row["input_ids"]))
                label = feature.get("labels", feature.get(self.label_key))
            else:
                row = self.encode(feature)
                label = row.pop("labels", None)
            if label is not None:
                labels.append(label)
            if self.instruction_mask:
                row["instruction_mask"] = [bool(m) for m in row["attention_mask"]]
            rows.append(row)
        if labels and len(labels) != len(rows):
            raise ValueError(f"features: some examples have a {self.label_key!r} and some do not")
        batch = pad_batch(rows, {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0,
                                 "instruction_mask": False}, self.padding_side, self.pad_to_multiple_of)
        if labels:
            batch["labels"] = torch.tensor(labels)
        return batch

