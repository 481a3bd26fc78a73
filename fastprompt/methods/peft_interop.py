"""Plain prompt tuning <-> PEFT prompt-tuning adapters (``adapter_config.json`` +
``adapter_model.safetensors`` holding ``prompt_embeddings``)."""
import json
from pathlib import Path
from typing import Union

import torch
from torch import nn

from fastprompt.methods.base import PEFT_CONFIG_NAME, config_attr, has_submodule
from fastprompt.methods.prompt_tuning import PromptTuningConfig, PromptTuningModel

PEFT_WEIGHTS_NAME = "adapter_model.safetensors"
PEFT_WEIGHTS_NAME_BIN = "adapter_model.bin"


def _peft_task_type(wrapper) -> str:
    name = type(wrapper.base_model).__name__
    if wrapper.is_encoder_decoder:
        return "SEQ_2_SEQ_LM"
    if name.endswith("ForSequenceClassification"):
        return "SEQ_CLS"
    if name.endswith("ForTokenClassification"):
        return "TOKEN_CLS"
    if name.endswith("ForQuestionAnswering"):
        return "QUESTION_ANS"
    if name.endswith("ForCausalLM") or name.endswith("LMHeadModel"):
        return "CAUSAL_LM"
    return "FEATURE_EXTRACTION"

def export_peft(wrapper, directory: Union[str, Path]) -> None:
    """Write a PEFT prompt-tuning adapter (``adapter_config.json``, ``adapter_model.safetensors``
    with ``prompt_embeddings`` (L, d)) that ``peft.PeftModel.from_pretrained`` loads.

    Only plain prompt tuning maps onto PEFT; DePT's and EPT's input offsets have no PEFT form."""
    if type(wrapper.prompt_config) is not PromptTuningConfig:
        raise ValueError(f"export_peft: PEFT prompt tuning has no form for {wrapper.prompt_config.method!r} "
                         "(its low-rank input offset); use save_pretrained")
    if wrapper.prompt_config.placement != "front":
        raise ValueError(f"export_peft: PEFT puts the soft tokens before the whole input; this prompt was placed "
                         f"{wrapper.prompt_config.placement!r} (after [CLS]) and would give other outputs there. "
                         "Train with placement='front' to export to PEFT, or use save_pretrained")
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    layers = config_attr(wrapper.base_model, "num_hidden_layers", "n_layer", "num_layers")
    heads = config_attr(wrapper.base_model, "num_attention_heads", "n_head", "num_heads")
    peft_config = {
        "peft_type": "PROMPT_TUNING",
        "task_type": _peft_task_type(wrapper),
        "auto_mapping": None,
        "base_model_name_or_path": wrapper.prompt_config.base_model_name_or_path,
        "revision": None,
        "inference_mode": True,
        "num_virtual_tokens": wrapper.num_virtual_tokens,
        "token_dim": wrapper.token_dim,
        "num_transformer_submodules": 1,
        "num_attention_heads": heads,
        "num_layers": layers,
        "prompt_tuning_init": "RANDOM",
        "prompt_tuning_init_text": None,
        "tokenizer_name_or_path": wrapper.prompt_config.tokenizer_name_or_path,
        "tokenizer_kwargs": None,
        "modules_to_save": None,
    }
    state = {"prompt_embeddings": wrapper._soft_prompt().weight.detach().contiguous().cpu()}
    # PEFT trains (and expects in the adapter) the classification head of SEQ_CLS / TOKEN_CLS
    # models, and any other modules_to_save; write the backbone's current ones
    saved = list(wrapper.prompt_config.modules_to_save or [])
    if peft_config["task_type"] in ("SEQ_CLS", "TOKEN_CLS"):
        saved += [h for h in ("classifier", "score") if h not in saved and has_submodule(wrapper.base_model, h)]
    for name in saved:
        for pname, p in wrapper._saved_module(name).named_parameters():
            state[f"base_model.{name}.{pname}"] = p.detach().contiguous().cpu()
    peft_config["modules_to_save"] = saved or None
    (directory / PEFT_CONFIG_NAME).write_text(json.dumps(peft_config, indent=2))
    save_file(state, str(directory / PEFT_WEIGHTS_NAME), metadata={"format": "pt"})

def from_peft(model: nn.Module, directory: Union[str, Path]):
    """Load a PEFT prompt-tuning adapter (``adapter_config.json`` with peft_type PROMPT_TUNING and
    ``adapter_model.safetensors`` / ``.bin`` holding ``prompt_embeddings``) onto ``model``.
    The prompt keeps PEFT's placement (before the whole input, ``placement="front"``), so the
    outputs equal PEFT's, BERT-family models included.

    For encoder-decoder adapters saved with two transformer submodules, the first L rows
    (the encoder prompt, the only part PEFT's prompt tuning feeds to the model) are used."""
    directory = Path(directory)
    config_path = directory / PEFT_CONFIG_NAME
    if not directory.is_dir():
        raise FileNotFoundError(f"directory: {directory} does not exist (expected a folder with {PEFT_CONFIG_NAME} "
                                f"and {PEFT_WEIGHTS_NAME}, written by PEFT's save_pretrained)")
    if not config_path.is_file():
        raise FileNotFoundError(f"directory: expected {PEFT_CONFIG_NAME} in {directory}")
    data = json.loads(config_path.read_text())
    peft_type = str(data.get("peft_type", "")).upper()
    if peft_type != "PROMPT_TUNING":
        raise ValueError(f"{config_path}: expected a PEFT prompt-tuning adapter (peft_type PROMPT_TUNING), got "
                         f"{data.get('peft_type')!r}")
    length = int(data["num_virtual_tokens"])
    token_dim = data.get("token_dim")
    if directory.joinpath(PEFT_WEIGHTS_NAME).is_file():
        from safetensors.torch import load_file

        state = load_file(str(directory / PEFT_WEIGHTS_NAME))
    elif directory.joinpath(PEFT_WEIGHTS_NAME_BIN).is_file():
        state = torch.load(directory / PEFT_WEIGHTS_NAME_BIN, map_location="cpu", weights_only=True)
    else:
        raise FileNotFoundError(f"directory: expected {PEFT_WEIGHTS_NAME} in {directory}")
    if "prompt_embeddings" not in state:
        raise ValueError(f"{directory}: the adapter holds no 'prompt_embeddings' (keys {sorted(state)})")
    weight = state["prompt_embeddings"]
    hidden = config_attr(model, "hidden_size", "n_embd", "d_model")
    if weight.dim() != 2 or weight.shape[0] < length:
        raise ValueError(f"{directory}: prompt_embeddings of shape {tuple(weight.shape)} do not hold "
                         f"{length} virtual tokens")
    if (token_dim and int(token_dim) != int(hidden)) or weight.shape[1] != int(hidden):
        raise ValueError(f"{directory}: the adapter was trained for a backbone with hidden size "
                         f"{weight.shape[1]}; this model has hidden size {hidden}")
    # modules PEFT saved with the prompt (e.g. a trained classification head): base_model.<module>.<param>
    heads = sorted({k[len("base_model."):].rsplit(".", 1)[0] for k in state if k.startswith("base_model.")})
    heads = [h.replace(".modules_to_save.default", "") for h in heads]
    config = PromptTuningConfig(num_virtual_tokens=length, init="tensor", init_tensor=weight[:length].float(),
                                tokenizer_name_or_path=data.get("tokenizer_name_or_path"),
                                modules_to_save=heads, placement="front")
    wrapper = PromptTuningModel(model, config)
    with torch.no_grad():
        for key, p in wrapper._saved_module_parameters().items():
            if key not in state:
                raise ValueError(f"{directory}: the adapter has no tensor {key!r}")
            p.copy_(state[key].to(p.device, p.dtype))
    return wrapper
