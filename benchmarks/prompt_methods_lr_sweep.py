"""Learning-rate sweep of prompt tuning, DePT, EPT and IAPT around their default learning rates
(``param_groups(scale=...)`` multiplies every group's default) on the real models and the shipped
``reviews`` task; prints one JSON line per run (validation accuracy before and after training).

    python benchmarks/prompt_methods_lr_sweep.py --model smollm2 --methods prompt_tuning dept ept iapt \
        --scales 0.3 1 3 --steps 60 --batch-size 8
    python benchmarks/prompt_methods_lr_sweep.py --model minilm --placements front after_first

Results measured with it are in ``benchmarks/results/prompt_methods_lr.md``.
"""
import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fastprompt.data import (ClassificationCollator, InstructionCollator, as_instructions, choice_accuracy,  # noqa: E402
                             classification_accuracy, label_words, load_task)
from fastprompt.demo import SYSTEM_PROMPT, _call, make_batches, train_steps  # noqa: E402
from fastprompt.methods import DePTModel, EPTModel, IAPTConfig, IAPTModel, PromptTuningModel, match_prompt_budget  # noqa: E402


def build(method, backbone, num_tokens, max_len, placement, seed=0):
    if method == "iapt":  # its own defaults (4 tokens per layer); a classifier's head trains with it
        head = [name for name in ("classifier", "score") if hasattr(backbone, name)]
        return IAPTModel(backbone, IAPTConfig(modules_to_save=head))  # initialised from torch.manual_seed(seed)
    kwargs = dict(init="vocab", seed=seed)
    if placement:
        kwargs["placement"] = placement
    if method == "prompt_tuning":
        return PromptTuningModel(backbone, num_virtual_tokens=num_tokens, **kwargs)
    m, r = match_prompt_budget(num_tokens, backbone.config.hidden_size, max_len)
    cls = DePTModel if method == "dept" else EPTModel
    return cls(backbone, num_virtual_tokens=m, rank=r, max_len=max_len, **kwargs)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", choices=("smollm2", "minilm"), default="smollm2")
    parser.add_argument("--methods", nargs="+", default=["prompt_tuning", "dept", "ept", "iapt"])
    parser.add_argument("--scales", nargs="+", type=float, default=[0.3, 1.0, 3.0])
    parser.add_argument("--placements", nargs="+", default=[None])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--num-tokens", type=int, default=20)
    parser.add_argument("--max-len", type=int, default=96)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0],
                        help="seeds of the head, the prompt init and the batch order (one run each)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from fastprompt.models import load_minilm, load_smollm2

    if args.model == "smollm2":
        data = as_instructions(load_task("reviews"))
    else:
        data = load_task("reviews")
    train, val = list(data["train"]), list(data["validation"])
    for placement in args.placements:
        placement = None if placement in (None, "None", "auto") else placement
        for method in args.methods:
            for scale, seed in [(s, seed) for s in args.scales for seed in args.seeds]:
                torch.manual_seed(seed)
                if args.model == "smollm2":
                    backbone, tok = load_smollm2()
                    collator = InstructionCollator(tok, system_prompt=SYSTEM_PROMPT, padding_side="right")
                    evaluate = lambda m: choice_accuracy(m, collator, val, label_words("reviews"))  # noqa: E731
                else:
                    backbone, tok = load_minilm("sequence_classification", num_labels=2)
                    collator = ClassificationCollator(tok, max_length=64)
                    evaluate = lambda m: classification_accuracy(m, collator, val)  # noqa: E731
                model = build(method, backbone, args.num_tokens, args.max_len, placement, seed)
                before = evaluate(model)
                groups = model.param_groups(scale=scale)
                optimizer = torch.optim.AdamW(groups)
                batches = make_batches(train, collator, args.steps, args.batch_size, seed=seed)
                start = time.perf_counter()
                losses = train_steps(model, optimizer, batches, _call, progress=False)
                elapsed = time.perf_counter() - start
                after = evaluate(model)
                placement_used = model.adapter_config.placement if method == "iapt" else model.prompt_config.placement
                print(json.dumps({"model": args.model, "method": method, "placement": placement_used,
                                  "scale": scale, "seed": seed, "lrs": {g["name"]: g["lr"] for g in groups},
                                  "steps": args.steps, "batch_size": args.batch_size,
                                  "val_acc_before": round(before, 4), "val_acc": round(after, 4),
                                  "loss_first": round(losses[0], 4), "loss_last5": round(sum(losses[-5:]) / 5, 4),
                                  "s_per_step": round(elapsed / args.steps, 3)}), flush=True)
                del model, backbone, optimizer


if __name__ == "__main__":
    main()
