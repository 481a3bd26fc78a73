"""Prompt-tuning methods on transformers models."""
from fastprompt.methods.iapt import IAPTAdapter, IAPTConfig, IAPTModel

__all__ = ["IAPTAdapter", "IAPTConfig", "IAPTModel", "IAPTTrainer"]


def __getattr__(name):  # IAPTTrainer needs transformers; import it on first use
    if name == "IAPTTrainer":
        from fastprompt.methods import iapt

        return iapt.IAPTTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
