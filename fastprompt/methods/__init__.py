"""Soft-prompt methods on transformers models, all on one base (:mod:`fastprompt.methods.base`):
IAPT, prompt tuning, DePT and EPT, one Trainer (:class:`AdapterTrainer`)."""
from fastprompt.methods.base import AdapterConfig, AdapterModel, AdapterNotFoundError
from fastprompt.methods.budget import count_parameters, dept_parameter_count, match_prompt_budget
from fastprompt.methods.dept import DePTConfig, DePTModel
from fastprompt.methods.ept import EPTConfig, EPTModel
from fastprompt.methods.iapt import IAPTAdapter, IAPTConfig, IAPTModel
from fastprompt.methods.prompt_tuning import PromptTuningConfig, PromptTuningModel

__all__ = ["AdapterConfig", "AdapterModel", "AdapterNotFoundError", "AdapterTrainer", "DePTConfig", "DePTModel",
           "EPTConfig", "EPTModel", "IAPTAdapter", "IAPTConfig", "IAPTModel", "PromptTuningConfig",
           "PromptTuningModel", "count_parameters", "dept_parameter_count", "match_prompt_budget"]


def __getattr__(name):  # the Trainer needs transformers; it is built on first use
    import importlib

    trainer = importlib.import_module("fastprompt.methods.trainer")

    if name == "AdapterTrainer":
        return trainer.trainer_class()
    if name in ("IAPTTrainer", "PromptTuningTrainer"):
        return trainer.deprecated_trainer(name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
