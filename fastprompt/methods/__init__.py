"""Prompt-tuning methods on transformers models."""
from fastprompt.methods.iapt import IAPTAdapter, IAPTConfig, IAPTModel

__all__ = ["IAPTAdapter", "IAPTConfig", "IAPTModel"]
