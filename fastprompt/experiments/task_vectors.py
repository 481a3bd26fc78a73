"""Task prompt vectors (arXiv 2408.01119) at small scale, on all-MiniLM-L6-v2 (BERT encoder) or
SmolLM2-135M-Instruct (chat decoder).

Prompt tuning (``PromptTuningModel``, random init per seed; on MiniLM soft tokens after ``[CLS]``
and a fresh classification head per run) on task families built from the shipped data, loaded
through ``datasets`` (``fastprompt.data.load_task``):

- ``sentiment_media`` (film and book reviews), ``sentiment_products`` (phones, headphones) and
  ``sentiment_places`` (restaurants, hotels): three related tasks, negative / positive;
- ``review_domain``: the domain of the same reviews (6 classes), unrelated to sentiment;
- ``news_topic``: the ``topics`` task (sport, science, business, politics), where shipped.

A task prompt vector is ``tau = tuned prompt - init``. Every task of one seed starts from the same
random init, so vectors of one seed can be added to that init. Three parts, as in the paper:

(a) similarity: cosine of the vectors of one task from different inits against that of the raw
    tuned prompts; cosine between the tasks' vectors (heat maps);
(b) low-resource transfer: the target ``sentiment_places`` with 16 / 32 / 64 / 128 training
    examples, prompt tuning started from a random init, from vocabulary tokens, from the init plus
    the mean vector of the related tasks (media, products) and, as a control, plus the vector of
    the unrelated ``review_domain``; learning curves and final accuracy;
(c) arithmetic: for pairs of tasks, the prompt ``init + lambda * merge(tau_A, tau_B)`` with the
    merge ``task_arithmetic`` (the sum), ``ties`` or ``dare``, lambda chosen from a grid on the
    validation splits; each task is scored (on MiniLM with its own head) as a percentage of its
    single-task accuracy (``init + tau_A``).

Differences from the paper: on MiniLM a 22M-parameter encoder with classification heads instead of
T5 text-to-text, so a task keeps its own head and a fresh head starts at chance whatever the prompt
init; on SmolLM2 a 135M-parameter decoder that answers the task's instruction zero-shot before any
tuning, trained for far fewer steps; 20 soft tokens instead of 100; test splits of 32-96 examples.
"""
import random
import time
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch

NAME = "task_vectors"
TITLE = "Task prompt vectors on {model} (arXiv 2408.01119, small scale)"
TARGET, RELATED, UNRELATED = "sentiment_places", ("sentiment_media", "sentiment_products"), "review_domain"
MERGES = {"task_arithmetic": {}, "ties": {"density": 0.2}, "dare": {"density": 0.5, "seed": 0}}
LAMBDAS = (0.4, 0.6, 0.8, 1.0)
# The smallest mean cosine gain of vectors over raw prompts (same task, different inits) that the
# similarity finding calls "more similar"; a smaller gain can be consistent yet says nothing.
MEANINGFUL_COSINE_GAIN = 0.02


@dataclass
class Settings:
    seeds: Sequence[int]
    tokens: int = 20
    steps: int = 150
    batch_size: int = 8
    lr_scale: Optional[float] = None  # None: the backbone's (MiniLM: prompt 9e-2, head 3e-2)
    sizes: Sequence[int] = (16, 32, 64, 128)
    transfer_steps: int = 40
    checkpoints: Sequence[int] = (0, 10, 20, 40)
    pairs: Optional[Sequence[Sequence[str]]] = None
    merges: Sequence[str] = tuple(MERGES)
    tasks: Optional[Sequence[str]] = None  # None: every task but entailment (quick: three)
    lambdas: Sequence[float] = LAMBDAS

    @classmethod
    def make(cls, quick: bool, seeds: Optional[int], backbone=None) -> "Settings":
        if backbone is not None and backbone.name == "smollm2":
            return cls.for_decoder(quick, seeds)
        if quick:
            return cls(seeds=tuple(range(seeds or 2)), steps=30, sizes=(16, 64), transfer_steps=10,
                       checkpoints=(0, 5, 10), merges=("task_arithmetic",))
        return cls(seeds=tuple(range(seeds or 3)))

    @classmethod
    def for_decoder(cls, quick: bool, seeds: Optional[int]) -> "Settings":
        """SmolLM2: a step of batch 4 costs about 10x a MiniLM step of batch 8 on the CPU, so fewer, smaller steps,
        four tasks (three related sentiment tasks and the unrelated domain task), two pairs (one
        related, one unrelated), two coefficients."""
        tasks = ("sentiment_media", "sentiment_products", "sentiment_places", "review_domain")
        pairs = (("sentiment_media", "sentiment_products"), ("sentiment_places", "review_domain"))
        if quick:
            return cls(seeds=tuple(range(seeds or 2)), steps=4, batch_size=4, sizes=(16,), transfer_steps=2,
                       checkpoints=(0, 2), merges=("task_arithmetic",), tasks=tasks, pairs=pairs[:1],
                       lambdas=(0.5, 1.0))
        return cls(seeds=tuple(range(seeds or 3)), steps=24, batch_size=4, sizes=(16, 64), transfer_steps=8,
                   checkpoints=(0, 4, 8), tasks=tasks, pairs=pairs, lambdas=(0.5, 1.0))


# ---- data and runs ------------------------------------------------------------------------------

def load_tasks(quick: bool = False, backbone=None, tasks: Optional[Sequence[str]] = None) -> Dict[str, Dict[str, list]]:
    """The tasks of the experiment (:func:`fastprompt.experiments.common.load_tasks`): ``tasks``, or
    every classification task of the reviews and the news topics where shipped (quick: three)."""
    from fastprompt.experiments.common import available_tasks, load_tasks as load

    if tasks:
        return load(tasks, backbone)
    if quick:
        return load(["sentiment_media", "sentiment_places", "review_domain"], backbone)
    return load([n for n in available_tasks() if n != "entailment"], backbone)


class Run:
    """Prompt tuning (:class:`fastprompt.experiments.common.Run`) of one task and seed, with its
    init kept and the accuracy of any other prompt on its head."""

    def __init__(self, task: str, data: Dict, seed: int, s: Settings, device: str, init: str = "random",
                 init_tensor: Optional[torch.Tensor] = None, backbone=None):
        from fastprompt.experiments.common import Run as CommonRun, prompt_tuning

        self.run = CommonRun(task, data, seed, prompt_tuning(s.tokens, init, init_tensor, s.lr_scale), device,
                             s.batch_size, backbone)
        self.model, self.task, self.seed = self.run.model, task, seed
        self.init = self.model.prompt().detach().clone()
        self.batches, self.train = self.run.batches, self.run.train

    def accuracy(self, examples: list, prompt: Optional[torch.Tensor] = None) -> float:
        """Accuracy on ``examples``, with ``prompt`` (L, d) in place of the tuned one if given."""
        if prompt is None:
            return self.run.accuracy(examples)
        weight = self.model.prompt_encoder.weight
        kept = weight.detach().clone()
        with torch.no_grad():
            weight.copy_(prompt)
        try:
            return self.run.accuracy(examples)
        finally:
            with torch.no_grad():
                weight.copy_(kept)

    def vector(self):
        from fastprompt.vectors import TaskPromptVector

        return TaskPromptVector.from_tensors(self.model.prompt(), self.init, task=self.task, init_seed=self.seed,
                                             base_model=self.run.backbone.title)


# ---- the three parts ------------------------------------------------------------------------------

def part_similarity(runs: Dict, tasks: Sequence[str], seeds: Sequence[int], report, log) -> None:
    from fastprompt.vectors import cosine_similarity

    def cos(a, b):
        return torch.nn.functional.cosine_similarity(a.flatten(), b.flatten(), dim=0).item()

    from fastprompt.experiments.report import clearly_positive, markdown_table, paired_difference

    rows, across_init_gain = [], []
    for t in tasks:
        vec, raw = [], []
        for i, s in enumerate(seeds):
            for s2 in seeds[i + 1:]:
                vec.append(cosine_similarity(runs[t, s].vector(), runs[t, s2].vector()))
                raw.append(cos(runs[t, s].model.prompt(), runs[t, s2].model.prompt()))
        across_init_gain += [v - r for v, r in zip(vec, raw)]
        rows.append((t, _ms(vec), _ms(raw)))
    consistent = clearly_positive(across_init_gain)
    if consistent and sum(across_init_gain) / len(across_init_gain) >= MEANINGFUL_COSINE_GAIN:
        verdict = "more similar than the raw prompts, as the paper reports"
    elif consistent:
        verdict = (f"more similar than the raw prompts by a consistent but negligible margin (below "
                   f"{MEANINGFUL_COSINE_GAIN} cosine): in substance this claim does not reproduce at this scale")
    else:
        verdict = "not clearly more similar than the raw prompts: this claim does not reproduce at this scale"
    report.add("## (a) Similarity\n\nCosine between the runs of one task from different random inits (every pair "
               f"of the {len(seeds)} seeds), of the task prompt vectors and of the raw tuned prompts:\n\n"
               + markdown_table(("task", "vectors", "raw prompts"), rows)
               + f"\n\nFinding: the vectors of one task from different inits are {verdict} (vectors minus raw "
               f"prompts: {paired_difference(across_init_gain)}).")
    n = len(tasks)
    vec_m, raw_m = torch.zeros(n, n), torch.zeros(n, n)
    for s in seeds:
        for i, a in enumerate(tasks):
            for j, b in enumerate(tasks):
                vec_m[i, j] += cosine_similarity(runs[a, s].vector(), runs[b, s].vector()) / len(seeds)
                raw_m[i, j] += cos(runs[a, s].model.prompt(), runs[b, s].model.prompt()) / len(seeds)
    table = [(a,) + tuple(f"{vec_m[i, j]:.3f}" for j in range(n)) for i, a in enumerate(tasks)]
    related = [t for t in tasks if t.startswith("sentiment_")]
    others = [t for t in tasks if t not in related]
    gaps = []  # per seed: mean cosine over related pairs minus over related-unrelated pairs
    for s in seeds:
        rel = [cosine_similarity(runs[a, s].vector(), runs[b, s].vector())
               for i, a in enumerate(related) for b in related[i + 1:]]
        unrel = [cosine_similarity(runs[a, s].vector(), runs[b, s].vector()) for a in related for b in others]
        if rel and unrel:
            gaps.append(sum(rel) / len(rel) - sum(unrel) / len(unrel))
    finding = ""
    if gaps:
        closer = clearly_positive(gaps)
        finding = (f"\n\nFinding: the vectors of the related sentiment tasks are "
                   f"{'closer to each other than to those of the unrelated tasks, as the paper reports' if closer else 'not clearly closer to each other than to those of the unrelated tasks: this claim does not reproduce at this scale'}"
                   f" (related pairs minus related-unrelated pairs, per seed: {paired_difference(gaps)}).")
    report.add("Cosine between the vectors of different tasks from the same init, mean over seeds:\n\n"
               + markdown_table(("task",) + tuple(tasks), table) + finding)
    table = [(a,) + tuple(f"{raw_m[i, j]:.3f}" for j in range(n)) for i, a in enumerate(tasks)]
    report.add("The same for the raw tuned prompts (which share the init):\n\n"
               + markdown_table(("task",) + tuple(tasks), table))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4.4), layout="constrained")
    for ax, m, title in ((axes[0], vec_m, "task prompt vectors"), (axes[1], raw_m, "raw tuned prompts")):
        im = ax.imshow(m.numpy(), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(n), tasks, rotation=35, ha="right", fontsize=8)
        ax.set_yticks(range(n), tasks, fontsize=8)
        for i in range(n):
            for j in range(n):
                ax.text(j, i, f"{m[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(f"cosine, {title} (same init)", fontsize=9)
    fig.colorbar(im, ax=axes, shrink=0.8)
    report.figure(fig, "similarity", "Cosine between tasks, mean over seeds.")
    log("similarity done")


def part_transfer(runs: Dict, data: Dict, s: Settings, device: str, report, log, backbone=None) -> None:
    from fastprompt.experiments.report import markdown_table

    target = data[TARGET]
    inits = ["random", "vocab", "related vectors"]
    if UNRELATED in data:
        inits.append("unrelated vector")
    curves: Dict = {}
    for seed in s.seeds:
        order = list(range(len(target["train"])))
        random.Random(1000 + seed).shuffle(order)
        for size in s.sizes:
            subset = [target["train"][i] for i in order[:size]]
            for init in inits:
                tensor = None
                if init == "related vectors":
                    related = [t for t in RELATED if t in data]
                    tensor = runs[related[0], seed].init + sum(runs[t, seed].vector().tau for t in related) / len(related)
                elif init == "unrelated vector":
                    tensor = runs[UNRELATED, seed].init + runs[UNRELATED, seed].vector().tau
                run = Run(TARGET, target, seed, s, device, init="vocab" if init == "vocab" else "random",
                          init_tensor=tensor, backbone=backbone)
                batches = run.batches(subset, s.transfer_steps, seed)
                accs, done = [], 0
                for point in s.checkpoints:
                    run.train(batches[done:point])
                    done = point
                    accs.append(run.accuracy(target["test"]))
                curves[init, size, seed] = accs
                report.rows.append({"part": "transfer", "task": TARGET, "seed": seed, "train_examples": size,
                                    "init": init, "steps": s.transfer_steps,
                                    **{f"test_acc_step_{p}": a for p, a in zip(s.checkpoints, accs)}})
            log(f"transfer seed {seed} size {size} done")
    rows = [(init,) + tuple(_ms([curves[init, n, seed][-1] for seed in s.seeds]) for n in s.sizes) for init in inits]
    from fastprompt.experiments.report import clearly_positive, paired_difference

    gain = [curves["related vectors", n, seed][-1] - curves["random", n, seed][-1] for n in s.sizes for seed in s.seeds]
    better = [n for n in s.sizes if sum(curves["related vectors", n, seed][-1] - curves["random", n, seed][-1]
                                        for seed in s.seeds) > 0]
    finding = (f"\n\nFinding: starting from the related tasks' vectors "
               f"{'beats' if clearly_positive(gain) else 'does not clearly beat'} the random init (accuracy gain over "
               f"all sizes and seeds: {paired_difference(gain)}; higher on average at n = "
               f"{', '.join(map(str, better)) or 'none'}).")
    report.add(f"## (b) Low-resource transfer\n\nTarget `{TARGET}`, {s.transfer_steps} steps of batch "
               f"{s.batch_size} on the first n training examples (a seeded shuffle), test accuracy (chance 0.5), "
               f"mean ± std over {len(s.seeds)} seeds. Related vectors: the mean of "
               f"{', '.join(t for t in RELATED if t in data)}; "
               f"unrelated: {UNRELATED}.\n\n" + markdown_table(("init",) + tuple(f"n={n}" for n in s.sizes), rows) + finding)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for init in inits:
        means = [sum(curves[init, n, seed][-1] for seed in s.seeds) / len(s.seeds) for n in s.sizes]
        axes[0].plot(s.sizes, means, marker="o", label=init)
        n = s.sizes[0]
        curve = [sum(curves[init, n, seed][k] for seed in s.seeds) / len(s.seeds) for k in range(len(s.checkpoints))]
        axes[1].plot(s.checkpoints, curve, marker="o", label=init)
    axes[0].set_xscale("log", base=2)
    axes[0].set_xlabel("training examples")
    axes[0].set_ylabel(f"test accuracy after {s.transfer_steps} steps")
    axes[1].set_xlabel(f"step (n={s.sizes[0]})")
    axes[1].set_ylabel("test accuracy")
    axes[0].legend(fontsize=8)
    report.figure(fig, "transfer", f"Low-resource transfer to {TARGET} (mean over seeds).")


def part_arithmetic(runs: Dict, data: Dict, tasks: Sequence[str], s: Settings, report, log, backbone=None) -> None:
    from fastprompt.experiments.report import markdown_table
    from fastprompt.vectors import TaskPromptVector

    pairs = s.pairs or [(a, b) for i, a in enumerate(tasks) for b in tasks[i + 1:]]
    results: Dict = {}
    for a, b in pairs:
        for seed in s.seeds:
            ra, rb = runs[a, seed], runs[b, seed]
            single = {a: ra.accuracy(data[a]["test"]), b: rb.accuracy(data[b]["test"])}
            for method in s.merges:
                merged = TaskPromptVector.merge([ra.vector(), rb.vector()], method, **MERGES[method])
                best = None
                for lam in s.lambdas:
                    prompt = merged.apply(ra.init, lam)
                    val = (ra.accuracy(data[a]["validation"], prompt) + rb.accuracy(data[b]["validation"], prompt)) / 2
                    if best is None or val > best[0]:
                        best = (val, lam, prompt)
                _, lam, prompt = best
                test = {a: ra.accuracy(data[a]["test"], prompt), b: rb.accuracy(data[b]["test"], prompt)}
                for t, other in ((a, b), (b, a)):
                    relative = 100 * test[t] / single[t] if single[t] else float("nan")
                    results.setdefault((a, b, method, t), []).append(relative)
                    report.rows.append({"part": "arithmetic", "task": t, "with": other, "seed": seed,
                                        "merge": method, "lambda": lam, "single_task_test_acc": single[t],
                                        "combined_test_acc": test[t], "percent_of_single": relative})
        log(f"arithmetic {a} + {b} done")
    rows = [(f"{a} + {b}", method, t, _ms(v, digits=1)) for (a, b, method, t), v in results.items()]
    by_method = {m: [x for (_, _, mm, _), v in results.items() if mm == m for x in v] for m in s.merges}
    finding = "\n\nFinding: on average over pairs, tasks and seeds the combined prompt keeps " + "; ".join(
        f"{sum(v) / len(v):.1f}% ({min(v):.0f}-{max(v):.0f}%) with {m}" for m, v in by_method.items() if v) + \
        " of the single-task accuracy (the paper: 99.1% / 96.5% for MNLI + QNLI on T5-base)."
    own_head = " with its own head" if backbone is None or backbone.head_modules else ""
    report.add("## (c) Arithmetic\n\nThe prompt `init + lambda * merge(tau_A, tau_B)` (lambda from "
               f"{list(s.lambdas)}, chosen per seed on the two validation splits; TIES density 0.2, DARE keep "
               f"probability 0.5), each task scored{own_head}: "
               "test accuracy as a percentage of the "
               f"task's single-task accuracy (`init + tau_task`), mean ± std over {len(s.seeds)} seeds.\n\n"
               + markdown_table(("pair", "merge", "task", "% of single-task accuracy"), rows) + finding)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{a}+{b}\n{m}\n({t})" for (a, b, m, t) in results]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(labels)), 4))
    means = [sum(v) / len(v) for v in results.values()]
    ax.bar(range(len(labels)), means)
    ax.axhline(100, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(labels)), labels, rotation=90, fontsize=6)
    ax.set_ylabel("% of single-task accuracy")
    report.figure(fig, "arithmetic", "Combined prompts: each task's accuracy as a percentage of its own (mean over seeds).")


def _ms(values, digits: int = 3):
    from fastprompt.experiments.report import mean_std

    return mean_std(values, digits)


# ---- entry point ----------------------------------------------------------------------------------

def run(report, quick: bool = False, seeds: Optional[int] = None, device: str = "cpu", log=print,
        backbone=None) -> None:
    from fastprompt.experiments.common import backbone as named_backbone
    from fastprompt.experiments.report import markdown_table

    backbone = backbone or named_backbone("minilm")
    s = Settings.make(quick, seeds, backbone)
    data = load_tasks(quick, backbone, s.tasks)
    tasks = list(data)
    report.add(__doc__.split("\n\n", 1)[1].strip() + "\n\n" + backbone.description)
    runs, rows = {}, []
    for seed in s.seeds:
        for t in tasks:
            start = time.perf_counter()
            r = Run(t, data[t], seed, s, device, backbone=backbone)
            losses = r.train(r.batches(data[t]["train"], s.steps, seed))
            seconds = time.perf_counter() - start
            acc = r.accuracy(data[t]["test"])
            runs[t, seed] = r
            report.rows.append({"part": "tuning", "task": t, "seed": seed, "steps": s.steps,
                                "loss_first": losses[0], "loss_last": losses[-1], "test_acc": acc,
                                "seconds": round(seconds, 1)})
            log(f"tuned {t} seed {seed}: loss {losses[0]:.3f} -> {losses[-1]:.3f}, test accuracy {acc:.3f} "
                f"({seconds:.0f} s)")
    for t in tasks:
        accs = [row["test_acc"] for row in report.rows if row.get("task") == t and row["part"] == "tuning"]
        sizes = "/".join(str(len(data[t][split])) for split in ("train", "validation", "test"))
        zero_shot = backbone.zero_shot(data[t])
        rows.append((t, data[t]["num_labels"], sizes, _ms(accs)) + (() if zero_shot is None else (f"{zero_shot:.3f}",)))
    lr = ", ".join(f"{group['lr']:g}" for group in runs[tasks[0], s.seeds[0]].run.optimizer.param_groups)
    header = ("task", "classes", "train/validation/test", "test accuracy")
    if len(rows[0]) > len(header):
        header += ("no prompt (zero-shot)",)
    report.add(f"## Single-task prompt tuning\n\n{s.tokens} soft tokens, {s.steps} steps of batch {s.batch_size}, "
               f"AdamW (learning rates {lr}), mean ± std over seeds "
               f"{list(s.seeds)}:\n\n" + markdown_table(header, rows))
    part_similarity(runs, tasks, s.seeds, report, log)
    part_transfer(runs, data, s, device, report, log, backbone)
    part_arithmetic(runs, data, tasks, s, report, log, backbone)
