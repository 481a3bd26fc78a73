"""What the experiments share: the task families (from the shipped data, loaded through
``datasets``), the two real backbones (all-MiniLM-L6-v2 with a classification head, SmolLM2-135M-
Instruct answering an instruction with one word), one training run of a method on a fresh copy of
a backbone, and the method builders at a common parameter budget."""
import copy
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

DOMAINS = ("book", "film", "headphones", "hotel", "phone", "restaurant")
SENTIMENT_TASKS = {"sentiment_media": ("film", "book"), "sentiment_products": ("phone", "headphones"),
                   "sentiment_places": ("restaurant", "hotel")}
# The decoder's instruction and answer words for the tasks that are not a shipped task of their own
# (the shipped ones use ``fastprompt.data.TASKS``); the words start with distinct tokens.
DOMAIN_INSTRUCTION = ("Which kind of thing is the following review about? Answer with one word: book, film, "
                      "headphones, hotel, phone or restaurant.\n\n{text}")
SHIPPED_TASK = {"sentiment_media": "reviews", "sentiment_products": "reviews", "sentiment_places": "reviews",
                "news_topic": "topics", "entailment": "entailment"}


def load_tasks(names: Optional[Sequence[str]] = None, backbone: Optional["Backbone"] = None
               ) -> Dict[str, Dict[str, list]]:
    """{task: {"train" / "validation" / "test": examples, "num_labels": classes}} for ``names``
    (default: every task available), examples with ``text`` and an integer ``label`` (for a
    decoder ``backbone`` also ``prompt`` and ``response``, and the task's answer words under
    ``"choices"``):

    - ``sentiment_media`` / ``sentiment_products`` / ``sentiment_places``: the sentiment of the
      film + book, phone + headphones and restaurant + hotel reviews (2 classes);
    - ``review_domain``: the domain of every review (6 classes);
    - ``news_topic`` and ``entailment``: the shipped ``topics`` and ``entailment`` tasks, where the
      installed version of fastprompt ships them.
    """
    from fastprompt.data import TASKS, load_task

    available = available_tasks()
    names = list(names) if names is not None else available
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(f"task: expected one of {available}, got {unknown[0]!r}")
    reviews = load_task("reviews") if any(n in SENTIMENT_TASKS or n == "review_domain" for n in names) else None
    tasks = {}
    for name in names:
        if name in SENTIMENT_TASKS:
            domains = SENTIMENT_TASKS[name]
            task = {split: list(reviews[split].filter(lambda e: e["domain"] in domains)) for split in reviews}
            task["num_labels"] = 2
        elif name == "review_domain":
            task = {split: list(reviews[split].map(lambda e: {"label": DOMAINS.index(e["domain"])}))
                    for split in reviews}
            task["num_labels"] = len(DOMAINS)
        else:
            shipped = {"news_topic": "topics", "entailment": "entailment"}[name]
            data = load_task(shipped)
            task = {split: list(data[split]) for split in data}
            task["num_labels"] = len(TASKS[shipped]["labels"])
        tasks[name] = backbone.prepare(name, task) if backbone is not None else task
    return tasks


def available_tasks() -> List[str]:
    """The names :func:`load_tasks` knows in this version of fastprompt."""
    from fastprompt.data import TASKS

    shipped = [name for name, task in (("news_topic", "topics"), ("entailment", "entailment")) if task in TASKS]
    return list(SENTIMENT_TASKS) + ["review_domain"] + shipped


# ---- backbones ---------------------------------------------------------------------------------------

class Backbone:
    """A real model the experiments train on: how a run loads a fresh copy of it, batches a task,
    scores it, and what the methods need to know about it (the longest input, LoRA's targets, the
    modules trained with every adapter)."""

    name = ""
    title = ""
    max_length = 64            # tokens per input (the collator truncates); DePT / EPT's max_len
    prompt_lr_scale = 3.0      # the prompt methods' learning rates: their defaults times this
    lora_task_type = ""
    lora_targets: Sequence[str] = ()
    head_modules: Optional[Sequence[str]] = None  # trained with every adapter (a fresh head)
    description = ""

    def load(self, num_labels: int):
        """(a fresh copy of the model for a task of ``num_labels`` classes, its tokenizer)"""
        raise NotImplementedError

    def collator(self, tokenizer):
        raise NotImplementedError

    def prepare(self, name: str, task: Dict) -> Dict:
        """``task`` (from :func:`load_tasks`) with what this backbone's collator and scoring read."""
        return task

    def accuracy(self, model, collator, examples: list, task: Dict) -> float:
        raise NotImplementedError

    def zero_shot(self, task: Dict, split: str = "test") -> Optional[float]:
        """The untouched model's accuracy on ``split`` (None where a fresh head would score chance)."""
        return None


class MiniLM(Backbone):
    name, title = "minilm", "all-MiniLM-L6-v2"
    lora_task_type, lora_targets, head_modules = "SEQ_CLS", ("query", "value"), ("classifier",)
    description = ("On all-MiniLM-L6-v2 (BERT encoder) every run trains a fresh classification head, seeded by "
                   "the run's seed, with its adapter; the prompt methods put their soft tokens after `[CLS]`; "
                   "accuracy is the argmax of the head.")

    def load(self, num_labels: int):
        from fastprompt.models import load_minilm

        return load_minilm("sequence_classification", num_labels=num_labels)

    def collator(self, tokenizer):
        from fastprompt.data import ClassificationCollator

        return ClassificationCollator(tokenizer, max_length=self.max_length)

    def accuracy(self, model, collator, examples, task):
        from fastprompt.data import classification_accuracy

        return classification_accuracy(model, collator, examples)


class SmolLM2(Backbone):
    name, title = "smollm2", "SmolLM2-135M-Instruct"
    max_length = 128
    prompt_lr_scale = 1.0
    lora_task_type, lora_targets = "CAUSAL_LM", ("q_proj", "v_proj")
    system_prompt = "You are a helpful assistant."
    description = ("On SmolLM2-135M-Instruct (LLaMA-architecture chat decoder) every task is an instruction in "
                   "the model's chat template (system prompt \"You are a helpful assistant.\") answered with one "
                   "word; training is the language-model loss on the answer (the word and the end of the turn); "
                   "accuracy ranks the first tokens of the answer words after the prompt; there is no head, so "
                   "the bare model's zero-shot accuracy is the baseline. The prompt methods train at their default "
                   "learning rates, as in the demo on this model.")

    def __init__(self):
        self._pristine = None  # (loader, model, tokenizer): loaded once, copied per run

    def _loaded(self):
        import fastprompt.models

        loader = fastprompt.models.load_smollm2
        if self._pristine is None or self._pristine[0] is not loader:
            model, tokenizer = loader()
            self._pristine = (loader, model.eval(), tokenizer)
        return self._pristine[1:]

    def load(self, num_labels: int):
        model, tokenizer = self._loaded()
        return copy.deepcopy(model), tokenizer

    def collator(self, tokenizer):
        from fastprompt.data import InstructionCollator

        return InstructionCollator(tokenizer, system_prompt=self.system_prompt, max_length=self.max_length)

    def prepare(self, name, task):
        from fastprompt.data import instruction, label_words

        if name == "review_domain":
            template, words = DOMAIN_INSTRUCTION, DOMAINS
        else:
            template, words = None, label_words(SHIPPED_TASK[name])

        def convert(example):
            prompt = (template.format(text=example["text"]) if template
                      else instruction(SHIPPED_TASK[name], **{k: v for k, v in example.items() if isinstance(v, str)}))
            return {**example, "prompt": prompt, "response": words[int(example["label"])]}

        out = {split: [convert(e) for e in task[split]] for split in ("train", "validation", "test")}
        return {**out, "num_labels": task["num_labels"], "choices": tuple(words)}

    def accuracy(self, model, collator, examples, task):
        from fastprompt.data import choice_accuracy

        return choice_accuracy(model, collator, examples, task["choices"])

    def zero_shot(self, task, split="test"):
        model, tokenizer = self._loaded()
        return self.accuracy(model, self.collator(tokenizer), task[split], task)


BACKBONES = {backbone.name: backbone for backbone in (MiniLM(), SmolLM2())}


def backbone(name: str = "minilm") -> Backbone:
    """The backbone called ``name`` ("minilm" or "smollm2")."""
    if name not in BACKBONES:
        raise ValueError(f"model: expected one of {sorted(BACKBONES)}, got {name!r}")
    return BACKBONES[name]


# ---- methods ----------------------------------------------------------------------------------------
# build(model, tokenizer, seed, backbone) -> (adapted model, optimizer); the prompt methods' learning
# rates are their defaults times the backbone's prompt_lr_scale (on MiniLM 3, the best of
# benchmarks/results/prompt_methods_lr.md) unless given.

def prompt_tuning(tokens: int, init: str = "random", init_tensor=None, lr_scale: Optional[float] = None) -> Callable:
    def build(model, tokenizer, seed, backbone: Backbone):
        from fastprompt.methods import PromptTuningConfig, PromptTuningModel

        if init_tensor is not None:
            config = PromptTuningConfig(num_virtual_tokens=tokens, init="tensor", init_tensor=init_tensor)
        else:
            config = PromptTuningConfig(num_virtual_tokens=tokens, init=init, seed=seed)
        adapted = PromptTuningModel(model, config, tokenizer=tokenizer)
        return adapted, torch.optim.AdamW(adapted.param_groups(scale=lr_scale or backbone.prompt_lr_scale))
    return build


def dept(budget_tokens: int, lr_scale: Optional[float] = None) -> Callable:
    def build(model, tokenizer, seed, backbone: Backbone):
        from fastprompt.methods import DePTModel, match_prompt_budget

        m, r = match_prompt_budget(budget_tokens, model.config.hidden_size, backbone.max_length)
        adapted = DePTModel(model, num_virtual_tokens=m, rank=r, max_len=backbone.max_length, init="vocab", seed=seed)
        return adapted, torch.optim.AdamW(adapted.param_groups(scale=lr_scale or backbone.prompt_lr_scale))
    return build


def ept(budget_tokens: int, num_spaces: int = 4, gate: str = "per_row", fusion: bool = True,
        lr_scale: Optional[float] = None) -> Callable:
    def build(model, tokenizer, seed, backbone: Backbone):
        from fastprompt.methods import EPTModel, match_prompt_budget

        m, r = match_prompt_budget(budget_tokens, model.config.hidden_size, backbone.max_length)
        adapted = EPTModel(model, num_virtual_tokens=m, rank=r, max_len=backbone.max_length, init="vocab",
                           seed=seed, num_spaces=num_spaces, gate=gate, fusion=fusion)
        return adapted, torch.optim.AdamW(adapted.param_groups(scale=lr_scale or backbone.prompt_lr_scale))
    return build


def iapt(bottleneck: int, activation: str = "rational", lr_scale: float = 1.0) -> Callable:
    """IAPT with 4 tokens per layer; ``activation``: "rational" (learned per layer, initialised
    as GELU) or the name of a fixed activation (the rational fit of it, frozen, in every layer)."""
    def build(model, tokenizer, seed, backbone: Backbone):
        from fastprompt.methods import IAPTConfig, IAPTModel

        torch.manual_seed(seed)
        init = "gelu" if activation == "rational" else activation
        modules = list(backbone.head_modules) if backbone.head_modules else None
        adapted = IAPTModel(model, IAPTConfig(bottleneck=bottleneck, rational_init=init, modules_to_save=modules))
        if activation != "rational":
            for name, p in adapted.named_parameters():
                if ".activation." in name:
                    p.requires_grad_(False)
        return adapted, torch.optim.AdamW(adapted.param_groups(scale=lr_scale))
    return build


def lora(rank: int, lr: float = 1e-3) -> Callable:
    def build(model, tokenizer, seed, backbone: Backbone):
        import peft

        torch.manual_seed(seed)
        config = peft.LoraConfig(task_type=backbone.lora_task_type, r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                 target_modules=list(backbone.lora_targets))
        adapted = peft.get_peft_model(model, config)
        return adapted, torch.optim.AdamW([p for p in adapted.parameters() if p.requires_grad], lr=lr)
    return build


# ---- one run ------------------------------------------------------------------------------------------

class Run:
    """One method trained on one task (a :func:`load_tasks` entry prepared for ``backbone``) from
    one seed, on a fresh copy of the backbone (on MiniLM a fresh classification head seeded by
    ``seed``)."""

    def __init__(self, task: str, data: Dict, seed: int, build: Callable, device: str = "cpu",
                 batch_size: int = 8, backbone: Optional[Backbone] = None):
        self.backbone = backbone or BACKBONES["minilm"]
        torch.manual_seed(seed)  # the head
        model, self.tokenizer = self.backbone.load(data["num_labels"])
        self.model, self.optimizer = build(model, self.tokenizer, seed, self.backbone)
        self.model.to(device)
        self.task, self.data, self.seed, self.device, self.batch_size = task, data, seed, device, batch_size
        self.collator = self.backbone.collator(self.tokenizer)
        self.train_seconds = 0.0
        self.steps = 0

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad)

    def batches(self, examples: list, steps: int, seed: int):
        from fastprompt.demo import make_batches

        return make_batches(examples, self.collator, steps, self.batch_size, seed=seed, device=self.device)

    def train(self, batches) -> List[float]:
        from fastprompt.data import model_inputs
        from fastprompt.demo import train_steps

        start = time.perf_counter()
        losses = train_steps(self.model, self.optimizer, batches, lambda m, b: m(**model_inputs(m, b)).loss,
                             progress=False)
        self.train_seconds += time.perf_counter() - start
        self.steps += len(batches)
        return losses

    def accuracy(self, examples: list) -> float:
        return self.backbone.accuracy(self.model, self.collator, examples, self.data)


def train_and_score(task: str, data: Dict, seed: int, build: Callable, steps: int, device: str = "cpu",
                    backbone: Optional[Backbone] = None, batch_size: int = 8, validation: bool = True) -> Dict:
    """A run of ``steps`` training steps; its row: trainable parameters, s/step, losses, accuracies
    (``val_acc`` only with ``validation``)."""
    run = Run(task, data, seed, build, device, batch_size, backbone)
    losses = run.train(run.batches(data["train"], steps, seed))
    row = {"task": task, "seed": seed, "trainable": run.trainable, "steps": steps, "batch_size": batch_size,
           "s_per_step": round(run.train_seconds / max(1, steps), 4), "loss_first": round(losses[0], 4),
           "loss_last5": round(sum(losses[-5:]) / len(losses[-5:]), 4)}
    if validation:
        row["val_acc"] = run.accuracy(data["validation"])
    row["test_acc"] = run.accuracy(data["test"])
    return {"row": row, "run": run}
