"""What the experiments share: the task families (from the shipped data, loaded through
``datasets``), one training run of a method on all-MiniLM-L6-v2 with its own backbone and head,
and the method builders at a common parameter budget."""
import time
from typing import Callable, Dict, List, Optional, Sequence

import torch

DOMAINS = ("book", "film", "headphones", "hotel", "phone", "restaurant")
SENTIMENT_TASKS = {"sentiment_media": ("film", "book"), "sentiment_products": ("phone", "headphones"),
                   "sentiment_places": ("restaurant", "hotel")}
MAX_LENGTH = 64  # tokens per input (the collator truncates); DePT / EPT's max_len


def load_tasks(names: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, list]]:
    """{task: {"train" / "validation" / "test": examples, "num_labels": classes}} for ``names``
    (default: every task available), examples with ``text`` and an integer ``label``:

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
        tasks[name] = task
    return tasks


def available_tasks() -> List[str]:
    """The names :func:`load_tasks` knows in this version of fastprompt."""
    from fastprompt.data import TASKS

    shipped = [name for name, task in (("news_topic", "topics"), ("entailment", "entailment")) if task in TASKS]
    return list(SENTIMENT_TASKS) + ["review_domain"] + shipped


# ---- methods ----------------------------------------------------------------------------------------
# build(backbone, tokenizer, seed) -> (model, optimizer); the learning rates are the defaults of
# each method times 3 for the prompt methods (the best of benchmarks/results/prompt_methods_lr.md).

def prompt_tuning(tokens: int, init: str = "random", init_tensor=None, lr_scale: float = 3.0) -> Callable:
    def build(backbone, tokenizer, seed):
        from fastprompt.methods import PromptTuningConfig, PromptTuningModel

        if init_tensor is not None:
            config = PromptTuningConfig(num_virtual_tokens=tokens, init="tensor", init_tensor=init_tensor)
        else:
            config = PromptTuningConfig(num_virtual_tokens=tokens, init=init, seed=seed)
        model = PromptTuningModel(backbone, config, tokenizer=tokenizer)
        return model, torch.optim.AdamW(model.param_groups(scale=lr_scale))
    return build


def dept(budget_tokens: int, lr_scale: float = 3.0) -> Callable:
    def build(backbone, tokenizer, seed):
        from fastprompt.methods import DePTModel, match_prompt_budget

        m, r = match_prompt_budget(budget_tokens, backbone.config.hidden_size, MAX_LENGTH)
        model = DePTModel(backbone, num_virtual_tokens=m, rank=r, max_len=MAX_LENGTH, init="vocab", seed=seed)
        return model, torch.optim.AdamW(model.param_groups(scale=lr_scale))
    return build


def ept(budget_tokens: int, num_spaces: int = 4, gate: str = "per_row", fusion: bool = True,
        lr_scale: float = 3.0) -> Callable:
    def build(backbone, tokenizer, seed):
        from fastprompt.methods import EPTModel, match_prompt_budget

        m, r = match_prompt_budget(budget_tokens, backbone.config.hidden_size, MAX_LENGTH)
        model = EPTModel(backbone, num_virtual_tokens=m, rank=r, max_len=MAX_LENGTH, init="vocab", seed=seed,
                         num_spaces=num_spaces, gate=gate, fusion=fusion)
        return model, torch.optim.AdamW(model.param_groups(scale=lr_scale))
    return build


def iapt(bottleneck: int, activation: str = "rational", lr_scale: float = 1.0) -> Callable:
    """IAPT with 4 tokens per layer; ``activation``: "rational" (learned per layer, initialised
    as GELU) or the name of a fixed activation (the rational fit of it, frozen, in every layer)."""
    def build(backbone, tokenizer, seed):
        from fastprompt.methods import IAPTConfig, IAPTModel

        torch.manual_seed(seed)
        init = "gelu" if activation == "rational" else activation
        model = IAPTModel(backbone, IAPTConfig(bottleneck=bottleneck, rational_init=init,
                                               modules_to_save=["classifier"]))
        if activation != "rational":
            for name, p in model.named_parameters():
                if ".activation." in name:
                    p.requires_grad_(False)
        return model, torch.optim.AdamW(model.param_groups(scale=lr_scale))
    return build


def lora(rank: int, lr: float = 1e-3) -> Callable:
    def build(backbone, tokenizer, seed):
        import peft

        torch.manual_seed(seed)
        config = peft.LoraConfig(task_type="SEQ_CLS", r=rank, lora_alpha=2 * rank, lora_dropout=0.0,
                                 target_modules=["query", "value"])
        model = peft.get_peft_model(backbone, config)
        return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr)
    return build


# ---- one run ------------------------------------------------------------------------------------------

class Run:
    """One method trained on one task from one seed, on its own all-MiniLM-L6-v2 (a fresh
    classification head seeded by ``seed``)."""

    def __init__(self, task: str, num_labels: int, seed: int, build: Callable, device: str = "cpu",
                 batch_size: int = 8):
        from fastprompt.data import ClassificationCollator
        from fastprompt.models import load_minilm

        torch.manual_seed(seed)  # the head
        backbone, self.tokenizer = load_minilm("sequence_classification", num_labels=num_labels)
        self.model, self.optimizer = build(backbone, self.tokenizer, seed)
        self.model.to(device)
        self.task, self.seed, self.device, self.batch_size = task, seed, device, batch_size
        self.collator = ClassificationCollator(self.tokenizer, max_length=MAX_LENGTH)
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
        from fastprompt.data import classification_accuracy

        return classification_accuracy(self.model, self.collator, examples)


def train_and_score(task: str, data: Dict, seed: int, build: Callable, steps: int, device: str = "cpu") -> Dict:
    """A run of ``steps`` training steps; its row: trainable parameters, s/step, losses, accuracies."""
    run = Run(task, data["num_labels"], seed, build, device)
    losses = run.train(run.batches(data["train"], steps, seed))
    row = {"task": task, "seed": seed, "trainable": run.trainable, "steps": steps,
           "s_per_step": round(run.train_seconds / max(1, steps), 4), "loss_first": round(losses[0], 4),
           "loss_last5": round(sum(losses[-5:]) / len(losses[-5:]), 4),
           "val_acc": run.accuracy(data["validation"]), "test_acc": run.accuracy(data["test"])}
    return {"row": row, "run": run}
