"""IAPT (arXiv 2405.18203) against prompt tuning, DePT, EPT and LoRA at small scale, on
all-MiniLM-L6-v2 or SmolLM2-135M-Instruct.

Every method trains on the task families of :func:`fastprompt.experiments.common.load_tasks`, for
the same number of AdamW steps of the same batches. The budget is about that of 100 soft tokens
(38,400 parameters on MiniLM, d = 384; 57,600 on SmolLM2, d = 576):

- IAPT: 4 soft tokens per layer from a generator of bottleneck 8 (down-projection, attention
  pooling, a rational activation, up-projection) per layer, default learning rates;
- prompt tuning with 100 tokens, and with 20 tokens (a fifth of the budget);
- DePT and EPT with the short prompt and rank that fit 100 tokens (``match_prompt_budget``; EPT's
  projection comes on top);
- LoRA through PEFT, r = 4 on the query and value projections of every layer.

(b) The pilot claim: each layer learning its own rational activation (initialised as GELU)
against one fixed activation in every layer (the rational fits of GELU, ReLU and SiLU, frozen),
and the shapes the layers learn. (c) Multi-tenant serving against LoRA: the numbers of the
serving benchmark (``python -m fastprompt.bench.serving``), read from its committed results.
"""
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

NAME = "iapt"
TITLE = "IAPT vs prompt tuning, DePT, EPT and LoRA on {model} (arXiv 2405.18203, small scale)"
BUDGET_TOKENS = 100
BOTTLENECK = 8
FIXED_ACTIVATIONS = ("gelu", "relu", "silu")


@dataclass
class Settings:
    seeds: Sequence[int]
    tasks: Sequence[str]
    activation_tasks: Sequence[str]
    steps: int = 64
    methods: Optional[Sequence[str]] = None
    batch_size: int = 8
    validation: bool = True  # score the validation split too

    @classmethod
    def make(cls, quick: bool, seeds: Optional[int], backbone=None) -> "Settings":
        from fastprompt.experiments.common import available_tasks

        if backbone is not None and backbone.name == "smollm2":
            return cls.for_decoder(quick, seeds)
        if quick:
            return cls(seeds=tuple(range(seeds or 2)), tasks=("sentiment_places",),
                       activation_tasks=("sentiment_places",), steps=20, methods=("IAPT", "prompt tuning (20)", "LoRA"))
        third = "news_topic" if "news_topic" in available_tasks() else "sentiment_media"
        return cls(seeds=tuple(range(seeds or 3)), tasks=("sentiment_places", "review_domain", third),
                   activation_tasks=("sentiment_places", "review_domain"))

    @classmethod
    def for_decoder(cls, quick: bool, seeds: Optional[int]) -> "Settings":
        """SmolLM2: a step of batch 4 costs about 10x a MiniLM step of batch 8 on the CPU, so fewer, smaller steps."""
        if quick:
            return cls(seeds=tuple(range(seeds or 2)), tasks=("sentiment_places",), activation_tasks=(),
                       steps=6, methods=("IAPT", "prompt tuning (20)", "LoRA"), batch_size=4, validation=False)
        return cls(seeds=tuple(range(seeds or 3)), tasks=("sentiment_places", "sentiment_media", "review_domain"),
                   activation_tasks=("sentiment_places",), steps=16, batch_size=4, validation=False)


def methods() -> Dict[str, object]:
    from fastprompt.experiments import common

    return {"IAPT": common.iapt(BOTTLENECK), "prompt tuning (100)": common.prompt_tuning(BUDGET_TOKENS),
            "prompt tuning (20)": common.prompt_tuning(20), "DePT": common.dept(BUDGET_TOKENS),
            "EPT": common.ept(BUDGET_TOKENS), "LoRA": common.lora(4)}


def run(report, quick: bool = False, seeds: Optional[int] = None, device: str = "cpu", log=print,
        backbone=None) -> None:
    from fastprompt.experiments import common
    from fastprompt.experiments.report import clearly_positive, markdown_table, mean_std, paired_difference

    backbone = backbone or common.backbone("minilm")
    s = Settings.make(quick, seeds, backbone)
    data = common.load_tasks(sorted(set(s.tasks) | set(s.activation_tasks)), backbone)
    report.add(__doc__.split("\n\n", 1)[1].strip() + "\n\n" + backbone.description)

    def train(task, seed, build):
        return common.train_and_score(task, data[task], seed, build, s.steps, device, backbone, s.batch_size,
                                      s.validation)

    chosen = {m: b for m, b in methods().items() if s.methods is None or m in s.methods}
    results: Dict = {}
    learned: Dict = {}
    # the methods take turns within each (task, seed), so that a change of the machine's speed
    # affects them alike
    for task in s.tasks:
        for seed in s.seeds:
            for method, build in chosen.items():
                out = train(task, seed, build)
                row = {"part": "methods", "method": method, **out["row"]}
                report.rows.append(row)
                results.setdefault((method, task), []).append(row)
                if method == "IAPT":
                    learned[task, seed] = (row, _activations(out["run"].model))
                log(f"{method} {task} seed {seed}: test {row['test_acc']:.3f}, {row['s_per_step']:.3f} s/step")
    header = ("method", "trainable") + tuple(s.tasks) + ("mean", "s/step", "train s")
    rows = []
    for method in chosen:
        per_task = [[r["test_acc"] for r in results[method, t]] for t in s.tasks]
        all_runs = [r for t in s.tasks for r in results[method, t]]
        means = [sum(v) / len(v) for v in per_task]
        rows.append((method, f"{all_runs[0]['trainable']:,}") + tuple(mean_std(v) for v in per_task)
                    + (f"{sum(means) / len(means):.3f}", mean_std([r["s_per_step"] for r in all_runs], 4),
                       f"{sum(r['s_per_step'] for r in all_runs) * s.steps / len(all_runs):.0f}"))
    zero_shot = {t: backbone.zero_shot(data[t]) for t in s.tasks}
    if all(v is not None for v in zero_shot.values()):
        rows.append(("no adapter (zero-shot)", "0") + tuple(f"{zero_shot[t]:.3f}" for t in s.tasks)
                    + (f"{sum(zero_shot.values()) / len(zero_shot):.3f}", "", ""))
        for t in s.tasks:
            report.rows.append({"part": "methods", "method": "no adapter (zero-shot)", "task": t, "trainable": 0,
                                "steps": 0, "test_acc": zero_shot[t]})
    findings = []
    for other in chosen:
        if other == "IAPT":
            continue
        diff = [a["test_acc"] - b["test_acc"] for t in s.tasks for a, b in zip(results["IAPT", t], results[other, t])]
        verdict = "higher than" if clearly_positive(diff) else (
            "lower than" if clearly_positive([-d for d in diff]) else "not clearly different from")
        findings.append(f"{verdict} {other} ({paired_difference(diff)})")
    head = ("trainable parameters include the classification head (of the first task)" if backbone.head_modules
            else "no head is trained")
    report.add(f"## (a) Methods at a comparable budget\n\n{s.steps} steps of batch {s.batch_size} per run; test "
               f"accuracy mean ± std over seeds {list(s.seeds)}; {head}; s/step and the training seconds of one "
               f"run are means over all runs.\n\n"
               + markdown_table(header, rows) + "\n\nFinding: IAPT's test accuracy, paired by task and seed, is "
               + "; ".join(findings) + ".")
    if s.activation_tasks:
        _activation_part(report, s, learned, train, log)
    _serving_part(report)


def _activations(model) -> List:
    """(numerator, denominator) of each layer's rational activation, on the CPU."""
    out = []
    for name, module in model.named_modules():
        if name.endswith(".activation") and hasattr(module, "numerator"):
            out.append((module.numerator.detach().cpu().clone(), module.denominator.detach().cpu().clone(),
                        getattr(module, "form", "A")))
    return out


def _activation_part(report, s: Settings, learned: Dict, train, log) -> None:
    from fastprompt.experiments import common
    from fastprompt.experiments.report import markdown_table, mean_std

    variants: Dict = {"learned rational per layer (GELU init)": {}}
    for task in s.activation_tasks:
        for seed in s.seeds:
            if (task, seed) not in learned:
                out = train(task, seed, common.iapt(BOTTLENECK))
                learned[task, seed] = (out["row"], _activations(out["run"].model))
            variants["learned rational per layer (GELU init)"].setdefault(task, []).append(learned[task, seed][0])
    for fixed in FIXED_ACTIVATIONS:
        name = f"fixed {fixed} in every layer"
        for task in s.activation_tasks:
            for seed in s.seeds:
                out = train(task, seed, common.iapt(BOTTLENECK, activation=fixed))
                row = {"part": "activation", "method": f"IAPT {name}", **out["row"]}
                report.rows.append(row)
                variants.setdefault(name, {}).setdefault(task, []).append(row)
                log(f"IAPT {name} {task} seed {seed}: test {row['test_acc']:.3f}")
    rows = [(name,) + tuple(mean_std([r["test_acc"] for r in v[t]]) for t in s.activation_tasks)
            + tuple(mean_std([r["loss_last5"] for r in v[t]]) for t in s.activation_tasks)
            for name, v in variants.items()]
    from fastprompt.experiments.report import clearly_positive, paired_difference

    learned_runs = variants["learned rational per layer (GELU init)"]
    findings = []
    for fixed in FIXED_ACTIVATIONS:
        runs = variants[f"fixed {fixed} in every layer"]
        diff = [a["test_acc"] - b["test_acc"] for t in s.activation_tasks for a, b in zip(learned_runs[t], runs[t])]
        verdict = "higher than" if clearly_positive(diff) else (
            "lower than" if clearly_positive([-d for d in diff]) else "not clearly different from")
        findings.append(f"{verdict} with fixed {fixed} ({paired_difference(diff)})")
    report.add("## (b) Learned rational activations vs one fixed activation\n\nIAPT as in (a); the fixed "
               "variants use the rational fit of the activation with its coefficients frozen. Test accuracy and "
               "the training loss of the last 5 steps, mean ± std over seeds:\n\n" + markdown_table(
                   ("activation",) + tuple(f"test acc, {t}" for t in s.activation_tasks)
                   + tuple(f"final loss, {t}" for t in s.activation_tasks), rows)
               + "\n\nFinding: with learned per-layer rational activations the test accuracy, paired by task and "
               "seed, is " + "; ".join(findings) + ".")
    _plot_activations(report, s, learned)


def _plot_activations(report, s: Settings, learned: Dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import torch

    import fastprompt

    tasks = list(s.activation_tasks)
    x = torch.linspace(-4, 4, 401)
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.6 * len(tasks) + 1, 3.6), squeeze=False,
                             layout="constrained")
    layers = len(learned[tasks[0], s.seeds[0]][1])
    colors = plt.get_cmap("viridis", max(2, layers))
    for ax, task in zip(axes[0], tasks):
        _, acts = learned[task, s.seeds[0]]
        for layer, (num, den, form) in enumerate(acts):
            with torch.no_grad():
                y = fastprompt.rational(x[None, :], num.float(), den.float(), form)[0]
            ax.plot(x, y, color=colors(layer), linewidth=1)
        ax.plot(x, torch.nn.functional.gelu(x), color="red", linestyle="--", linewidth=1, label="GELU (init)")
        ax.set_title(f"{task}, seed {s.seeds[0]}", fontsize=9)
        ax.set_xlabel("x")
    axes[0][0].set_ylabel("learned activation")
    axes[0][0].legend(fontsize=7)
    scale = plt.cm.ScalarMappable(cmap=colors, norm=matplotlib.colors.Normalize(0, max(1, layers - 1)))
    fig.colorbar(scale, ax=axes[0].tolist(), label="layer")
    report.figure(fig, "activations", "The rational activation each layer learned (IAPT, seed "
                                      f"{s.seeds[0]}), against its GELU initialisation.")


def _serving_part(report) -> None:
    from fastprompt.experiments.report import markdown_table

    folder = Path(__file__).resolve().parents[2] / "benchmarks" / "results"
    rows = []
    for path in sorted(folder.glob("serving_*.json")):
        result = json.loads(path.read_text())
        table = {(r["batch"], r["new_tokens"], r["tenants"], r["provider"]): r for r in result["rows"]}
        for (batch, new, tenants, provider), r in sorted(table.items()):
            if provider != "iapt" or (batch, new, tenants, "lora") not in table:
                continue
            lora = table[batch, new, tenants, "lora"]
            rows.append((result["device"], batch, new, tenants, r["tokens_per_s"], lora["tokens_per_s"],
                         f"{r['tokens_per_s'] / lora['tokens_per_s']:.2f}", r["x_bare"], lora["x_bare"]))
    text = ("## (c) Multi-tenant serving against LoRA\n\nFrom the committed results of the serving benchmark "
            "(SmolLM2-135M-Instruct, greedy generation, 64 adapters loaded per provider; see "
            "benchmarks/results/serving_*.md for how each was measured).\n\n")
    if rows:
        text += markdown_table(("device", "batch", "new tokens", "tenants", "IAPT tokens/s", "LoRA tokens/s",
                                "IAPT / LoRA", "IAPT x bare", "LoRA x bare"), rows)
    else:
        text += "No serving results found (run `python -m fastprompt.bench.serving`)."
    report.add(text)
