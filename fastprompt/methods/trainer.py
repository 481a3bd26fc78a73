"""One transformers.Trainer for every fastprompt method (built on first use, so importing
fastprompt needs no transformers)."""
import warnings
from pathlib import Path
from typing import Optional

import torch

from fastprompt.methods.base import AdapterModel

_TRAINER = None


def _build_trainer_class():
    import transformers

    class AdapterTrainer(transformers.Trainer):
        """transformers.Trainer for a fastprompt :class:`~fastprompt.methods.base.AdapterModel`
        (IAPT, prompt tuning, DePT, EPT).

        - Checkpoints hold the adapters only, in the ``save_pretrained`` format (the active adapter
          in the checkpoint folder, others in sub-folders; loadable with ``from_pretrained``). The
          plain Trainer would write the whole backbone, which fails for tied weights.
        - ``train(resume_from_checkpoint=...)`` (a checkpoint folder, or True for the last one)
          restores the adapters in place, and the Trainer restores optimizer, scheduler, RNG
          states and data position from the same folder: a resumed run ends where an
          uninterrupted one does. ``load_best_model_at_end`` reloads the best checkpoint's adapters.
        - Without ``optimizers=``, the optimizer is AdamW (or ``args.optim``) over the model's
          ``param_groups()``: the method's default learning rates, not ``args.learning_rate``
          (whose default of 5e-5 is far too small for soft prompts); pass
          ``param_groups={...}`` (the model's ``param_groups`` keywords, e.g. ``{"scale": 0.3}``)
          to change them. ``args.weight_decay`` applies to every group.
        """

        def __init__(self, *args, param_groups: Optional[dict] = None, **kwargs):
            self.param_group_kwargs = dict(param_groups or {})
            super().__init__(*args, **kwargs)

        def _adapter_model(self, model=None):
            model = self.accelerator.unwrap_model(model if model is not None else self.model)
            return model if isinstance(model, AdapterModel) else None

        def create_optimizer(self, model=None):
            wrapper = self._adapter_model(model)
            if self.optimizer is not None or wrapper is None or getattr(self, "optimizer_cls_and_kwargs", None):
                return super().create_optimizer(model)
            optimizer_cls, optimizer_kwargs = transformers.Trainer.get_optimizer_cls_and_kwargs(self.args)
            optimizer_kwargs.pop("lr", None)
            kwargs = {"weight_decay": self.args.weight_decay, **self.param_group_kwargs}
            self.optimizer = optimizer_cls(wrapper.param_groups(**kwargs), **optimizer_kwargs)
            return self.optimizer

        def _save(self, output_dir=None, state_dict=None):
            output_dir = Path(output_dir if output_dir is not None else self.args.output_dir)
            if not self.args.should_save:
                return
            wrapper = self._adapter_model()
            if wrapper is None:
                return super()._save(str(output_dir), state_dict)
            wrapper.save_pretrained(output_dir)
            torch.save(self.args, output_dir / transformers.trainer.TRAINING_ARGS_NAME)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            wrapper = self._adapter_model(model)
            if wrapper is None:
                return super()._load_from_checkpoint(resume_from_checkpoint, model)
            wrapper.load_checkpoint(resume_from_checkpoint)

        def _load_best_model(self):
            wrapper = self._adapter_model()
            if wrapper is None:
                return super()._load_best_model()
            wrapper.load_checkpoint(self.state.best_model_checkpoint, "best_model_checkpoint")

    AdapterTrainer.__qualname__ = "AdapterTrainer"
    AdapterTrainer.__module__ = __name__
    return AdapterTrainer


def trainer_class():
    """The AdapterTrainer class (transformers is imported on the first call)."""
    global _TRAINER
    if _TRAINER is None:
        _TRAINER = _build_trainer_class()
    return _TRAINER


def deprecated_trainer(name: str):
    """``IAPTTrainer`` / ``PromptTuningTrainer``: the old names of AdapterTrainer."""
    warnings.warn(f"{name} is deprecated; use fastprompt.methods.AdapterTrainer (one Trainer for every method)",
                  DeprecationWarning, stacklevel=3)
    return trainer_class()


def __getattr__(name):
    if name == "AdapterTrainer":
        return trainer_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
