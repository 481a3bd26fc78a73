"""Prompt-tuning methods on transformers models."""
from fastprompt.methods.iapt import IAPTAdapter, IAPTConfig, IAPTModel
from fastprompt.methods.prompt_tuning import (DePTConfig, DePTModel, EPTConfig, EPTModel, PromptTuningConfig,
                                              PromptTuningModel, count_parameters, dept_parameter_count,
                                              match_prompt_budget)

__all__ = ["IAPTAdapter", "IAPTConfig", "IAPTModel", "IAPTTrainer"]
__all__ += ["DePTConfig", "DePTModel", "EPTConfig", "EPTModel", "PromptTuningConfig", "PromptTuningModel",
            "PromptTuningTrainer", "count_parameters", "dept_parameter_count", "match_prompt_budget"]


def __getattr__(name):  # IAPTTrainer needs transformers; import it on first use
    if name == "IAPTTrainer":
        from fastprompt.methods import iapt

        return iapt.IAPTTrainer
    if name == "PromptTuningTrainer":
        from fastprompt.methods import prompt_tuning

        return prompt_tuning.PromptTuningTrainer
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
