"""Data for prompt tuning: the task families fastprompt ships (JSONL, loaded through
``datasets``), collators that build instruction-tuning batches from a tokenizer's chat template
(``instruction_mask`` and ``labels`` included) and classification batches, and held-out accuracy.

The collators and the evaluation helpers need only torch and a tokenizer; the loaders need the
``datasets`` package.
"""
from fastprompt.data.collate import IGNORE_INDEX, ClassificationCollator, InstructionCollator, pad_batch
from fastprompt.data.evaluate import (choice_accuracy, classification_accuracy, first_token_ids, generate_answers,
                                      model_inputs)
from fastprompt.data.loaders import (SPLITS, TASKS, as_instructions, instruction, label_words, load_files, load_task,
                                     task_files, tasks_folder)

__all__ = ["IGNORE_INDEX", "ClassificationCollator", "InstructionCollator", "pad_batch", "choice_accuracy",
           "classification_accuracy", "first_token_ids", "generate_answers", "model_inputs", "SPLITS", "TASKS",
           "as_instructions", "instruction", "label_words", "load_files", "load_task", "task_files", "tasks_folder"]
