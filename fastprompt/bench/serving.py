"""Multi-tenant serving benchmark on SmolLM2-135M-Instruct (the ``serving`` family of ``make bench``).

    python -m fastprompt.bench.serving [--quick] [--device cpu|cuda] [--markdown DIR] [--charts DIR]
                                       [--output PREFIX] [--repeats N] [--batch B ...]
                                       [--new N ...] [--tenants N ...] [--adapters N]
                                       [--architecture DIR | --save-architecture DIR]

Greedy generation of ``new`` tokens (1: scoring, one prefill; 16: chat) for a batch of the
shipped task's prompts in SmolLM2's chat template (about 60 tokens, left-padded), each row
served by one of ``tenants`` different adapters (rows assigned round-robin), by these providers:

- ``bare``: the backbone alone (the ceiling);
- ``iapt``: fastprompt IAPT (its defaults: 4 tokens per layer, bottleneck 32), ``tenant_ids``;
- ``prompt_tuning``: fastprompt prompt tuning (20 soft tokens), ``tenant_ids``;
- ``lora``: PEFT LoRA (r=8 on q_proj and v_proj), mixed through ``generate(adapter_names=...)``.

Every provider has 64 adapters loaded (``--adapters``); each on its own copy of the backbone.
``--batch``, ``--new`` and ``--tenants`` replace the default grid (batch 16 and 64, 1 and 16 new
tokens, 1 / 4 / 16 / 64 tenants, at most one tenant per row). The providers of
one configuration are timed in ``repeats`` rounds after a warm-up call each (a round calls each
provider once, in reversed order every other round); reported are the median time per call,
tokens/s (B x new / time) and the median over rounds of the ratio to the bare backbone's call of
the same round (its range too: this machine's speed drifts by several percent within
minutes). The adapters are untrained (the compute of a call does not depend on the
weights). Writes ``DIR/serving_<device>.md`` and a chart of tokens/s against the number of
tenants.

On a machine without the model package (a GPU machine with no network, say), ``--save-architecture
DIR`` run where it is installed writes SmolLM2's configuration and tokenizer (a few MB), and
``--architecture DIR`` there serves that configuration with random weights: the same work per call.
"""
import argparse
import datetime
import json
import platform
import sys
import time
from pathlib import Path
from typing import Dict, List

import torch

PROVIDERS = ("bare", "iapt", "prompt_tuning", "lora")
LOADED_ADAPTERS = 64


def configurations(quick: bool):
    """(batch, new tokens, tenant counts) of the run."""
    if quick:
        return [(4, 1, [1, 4]), (4, 4, [1, 4])]
    return [(16, 1, [1, 4, 16]), (16, 16, [1, 4, 16]), (64, 1, [1, 4, 16, 64]), (64, 16, [1, 4, 16, 64])]


def save_architecture(folder: str) -> None:
    """Writes SmolLM2's configuration and tokenizer (chat template included), without its weights,
    to ``folder``: what ``--architecture`` needs on a machine without the model package."""
    from fastprompt.models import load_smollm2

    model, tokenizer = load_smollm2()
    config = model.config
    if hasattr(config, "quantization_config"):  # the GGUF file's, de-quantised on loading
        del config.quantization_config
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def _load(device, architecture=None):
    """SmolLM2 and its tokenizer; with ``architecture`` (a folder written by
    :func:`save_architecture`), the same configuration with random weights (seed 0)."""
    if architecture is None:
        from fastprompt.models import load_smollm2

        model, tokenizer = load_smollm2()
    else:
        import transformers

        config = transformers.AutoConfig.from_pretrained(architecture)
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(config).eval()
        tokenizer = transformers.AutoTokenizer.from_pretrained(architecture)
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return model.to(device), tokenizer


def build_providers(device: str, adapters: int = LOADED_ADAPTERS, architecture=None):
    """The served models, the tokenizer and each provider's bytes per adapter (``architecture``:
    see :func:`_load`)."""
    import peft

    from fastprompt.methods import IAPTModel, PromptTuningModel

    bare, tokenizer = _load(device, architecture)
    iapt = IAPTModel(_load(device, architecture)[0], adapter_name="t0")
    prompt = PromptTuningModel(bare, num_virtual_tokens=20, adapter_name="t0", init="random", seed=0)
    for i in range(1, adapters):
        iapt.add_adapter(f"t{i}")
        prompt.add_adapter(f"t{i}", num_virtual_tokens=20, init="random", seed=i)
    lora_config = peft.LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0,
                                  target_modules=["q_proj", "v_proj"])
    lora = peft.get_peft_model(_load(device, architecture)[0], lora_config, adapter_name="t0")
    for i in range(1, adapters):
        lora.add_adapter(f"t{i}", lora_config)
    lora.eval()
    lora_bytes = sum(p.numel() * p.element_size() for n, p in lora.named_parameters() if ".t0." in n)
    memory = {"iapt": iapt.adapter_memory()["t0"], "prompt_tuning": prompt.adapter_memory()["t0"],
              "lora": lora_bytes}
    return {"bare": bare, "iapt": iapt, "prompt_tuning": prompt, "lora": lora}, tokenizer, memory


def make_batch(tokenizer, batch: int, device: str) -> Dict[str, torch.Tensor]:
    from fastprompt.data import InstructionCollator, instruction, task_files

    # the test split's texts read directly: the benchmark needs no `datasets`
    with open(task_files("reviews")["test"], encoding="utf-8") as f:
        texts = [json.loads(line)["text"] for line in f if line.strip()]
    collator = InstructionCollator(tokenizer, system_prompt="You are a helpful assistant.")
    prompts = [instruction("reviews", texts[i % len(texts)]) for i in range(batch)]
    return {k: v.to(device) for k, v in collator.prompts(prompts).items()}


def generate_call(name: str, model, batch: Dict[str, torch.Tensor], tenants: int, new: int, pad: int):
    """A function running one greedy generation of ``new`` tokens for the provider."""
    rows = batch["input_ids"].shape[0]
    tenant_ids = [f"t{i % tenants}" for i in range(rows)]
    common = dict(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], max_new_tokens=new,
                  min_new_tokens=new, do_sample=False, pad_token_id=pad)
    if name == "bare":
        return lambda: model.generate(**common)
    if name == "iapt":
        return lambda: model.generate(**common, instruction_mask=batch["instruction_mask"], tenant_ids=tenant_ids)
    if name == "prompt_tuning":
        return lambda: model.generate(**common, tenant_ids=tenant_ids)
    return lambda: model.generate(**common, adapter_names=tenant_ids)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def measure(calls: Dict[str, callable], device: str, repeats: int) -> Dict[str, List[float]]:
    """Seconds per call of each provider in each of ``repeats`` rounds, after one warm-up call
    each. A round runs every provider once, in reversed order every other round, so that a slow
    drift of the machine's speed does not favour a provider."""
    samples: Dict[str, List[float]] = {name: [] for name in calls}
    for name, call in calls.items():
        call()
    names = list(calls)
    for round_index in range(repeats):
        for name in (names if round_index % 2 == 0 else names[::-1]):
            _sync(device)
            start = time.perf_counter()
            calls[name]()
            _sync(device)
            samples[name].append(time.perf_counter() - start)
    return samples


def _median(values: List[float]) -> float:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def run(device: str, quick: bool, repeats: int, log=print, adapters: int = LOADED_ADAPTERS, configs=None,
        on_row=None, architecture=None) -> dict:
    """Measures every configuration (default :func:`configurations`); returns the result dict
    that :func:`markdown` and :func:`chart` render (``on_row(result so far)`` after each one).
    ``architecture``: see :func:`_load`."""
    models, tokenizer, memory = build_providers(device, adapters, architecture)
    pad = tokenizer.pad_token_id
    rows = []
    configs = configs or configurations(quick)
    total = sum(len(counts) for _, _, counts in configs)
    done = prompt_tokens = 0

    def result(rows):
        return {"device": device_name(device), "torch": torch.__version__,
                "date": datetime.date.today().isoformat(), "prompt_tokens": prompt_tokens,
                "bytes_per_adapter": memory, "loaded_adapters": adapters, "repeats": repeats, "rows": list(rows),
                "weights": "pretrained" if architecture is None else "random",
                "versions": _versions()}

    for batch_size, new, counts in configs:
        batch = make_batch(tokenizer, batch_size, device)
        prompt_tokens = max(prompt_tokens, int(batch["input_ids"].shape[1]))
        for tenants in counts:
            done += 1
            log(f"[{done}/{total}] serving B={batch_size} new={new} tenants={tenants} ...")
            # the bare backbone runs in every configuration's rounds: each ratio compares calls
            # timed side by side
            calls = {name: generate_call(name, models[name], batch, tenants, new, pad) for name in PROVIDERS}
            with torch.no_grad():
                samples = measure(calls, device, repeats)
            for name, times in samples.items():
                seconds = _median(times)
                # the ratio of each round's calls, which ran side by side, then the median over rounds
                ratios = [b / t for b, t in zip(samples["bare"], times)]
                rows.append({"batch": batch_size, "new_tokens": new, "tenants": tenants,
                             "provider": name, "seconds": round(seconds, 4),
                             "tokens_per_s": round(batch_size * new / seconds, 1),
                             "x_bare": round(_median(ratios), 3),
                             "x_bare_range": [round(min(ratios), 3), round(max(ratios), 3)]})
            if on_row is not None:
                on_row(result(rows))
    return result(rows)


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def _versions() -> Dict[str, str]:
    import peft
    import transformers

    return {"transformers": transformers.__version__, "peft": peft.__version__}


def markdown(result: dict) -> str:
    lines = [f"# Multi-tenant serving: SmolLM2-135M-Instruct, greedy generation ({result['device']})", "",
             f"torch {result['torch']}, transformers {result['versions']['transformers']}, peft "
             f"{result['versions']['peft']}, {result['date']}. `python -m fastprompt.bench.serving`: prompts of "
             f"{result['prompt_tokens']} tokens or fewer (left-padded), {result['loaded_adapters']} adapters loaded "
             f"per provider, rows assigned to `tenants` adapters round-robin; {result.get('repeats', '?')} rounds, each "
             "running every provider once (in reversed order every other round), after a warm-up call each. "
             "`s / call`: the median over rounds. `x_bare`: the median over rounds of the bare backbone's "
             "time / the provider's in the same round, with its lowest and highest round (the bare row of a "
             "configuration has no tenants; it is listed with the configuration it was timed with)."
             + (" Weights: random, in SmolLM2's configuration, with its tokenizer and chat template (`--architecture`;"
                " the work of a call does not depend on the weights, and every call generates all its tokens)."
                if result.get("weights") == "random" else ""), "",
             "| batch | new tokens | tenants | provider | s / call | tokens/s | x_bare | x_bare range |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        low, high = r.get("x_bare_range", (r["x_bare"], r["x_bare"]))
        lines.append(f"| {r['batch']} | {r['new_tokens']} | {r['tenants']} | {r['provider']} | {r['seconds']} | "
                     f"{r['tokens_per_s']} | {r['x_bare']} | {low}-{high} |")
    lines += ["", "Bytes per adapter: " + ", ".join(f"{k} {v:,}" for k, v in result["bytes_per_adapter"].items()), ""]
    return "\n".join(lines)


def chart(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    configs = sorted({(r["batch"], r["new_tokens"]) for r in result["rows"]})
    fig, axes = plt.subplots(1, len(configs), figsize=(4.2 * len(configs), 3.6), squeeze=False)
    for ax, (batch, new) in zip(axes[0], configs):
        rows = [r for r in result["rows"] if r["batch"] == batch and r["new_tokens"] == new]
        counts = sorted({r["tenants"] for r in rows})
        for name in PROVIDERS[1:]:
            ys = [next(r["tokens_per_s"] for r in rows if r["provider"] == name and r["tenants"] == c) for c in counts]
            ax.plot(counts, ys, marker="o", label=name)
        bare = [next(r["tokens_per_s"] for r in rows if r["provider"] == "bare" and r["tenants"] == c) for c in counts]
        ax.plot(counts, bare, color="black", linestyle="--", linewidth=1, label="bare")
        ax.set_xscale("log", base=2)
        ax.set_xticks(counts, [str(c) for c in counts])
        ax.set_title(f"batch {batch}, {new} new token{'s' if new > 1 else ''}")
        ax.set_xlabel("distinct tenants in the batch")
        ax.set_ylabel("tokens/s")
        ax.set_ylim(bottom=0)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"SmolLM2-135M multi-tenant generation, {result['device']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="batch 4, 1 and 4 tenants, 1 and 4 new tokens")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--markdown", help="write DIR/serving_<device>.md")
    parser.add_argument("--charts", help="write DIR/serving_<device>.png")
    parser.add_argument("--output", help="write PREFIX.json")
    parser.add_argument("--batch", nargs="+", type=int, help="batch sizes (replace the default grid)")
    parser.add_argument("--new", nargs="+", type=int, help="new tokens per generation")
    parser.add_argument("--tenants", nargs="+", type=int, help="distinct tenants per batch")
    parser.add_argument("--adapters", type=int, default=LOADED_ADAPTERS, help="adapters loaded per provider")
    parser.add_argument("--architecture", metavar="DIR",
                        help="SmolLM2's configuration and tokenizer from DIR, random weights (no model package needed)")
    parser.add_argument("--save-architecture", metavar="DIR",
                        help="write SmolLM2's configuration and tokenizer to DIR and exit")
    args = parser.parse_args(argv)
    if args.save_architecture:
        save_architecture(args.save_architecture)
        return
    configs = None
    if args.batch or args.new or args.tenants:
        grid = configurations(args.quick)
        batches = args.batch or sorted({b for b, _, _ in grid})
        news = args.new or sorted({n for _, n, _ in grid})
        counts = args.tenants or sorted({c for _, _, cs in grid for c in cs})
        configs = [(b, n, [c for c in counts if c <= min(b, args.adapters)]) for b in batches for n in news]
    kind = "cuda" if args.device.startswith("cuda") else "cpu"

    def write(result):  # after every configuration, so an interrupted run keeps what it measured
        if args.markdown:
            Path(args.markdown).mkdir(parents=True, exist_ok=True)
            (Path(args.markdown) / f"serving_{kind}.md").write_text(markdown(result))
        if args.charts:
            Path(args.charts).mkdir(parents=True, exist_ok=True)
            chart(result, Path(args.charts) / f"serving_{kind}.png")
        if args.output:
            Path(args.output + ".json").write_text(json.dumps(result, indent=1))

    result = run(args.device, args.quick, args.repeats, log=lambda msg: print(msg, file=sys.stderr, flush=True),
                 adapters=args.adapters, configs=configs, on_row=write, architecture=args.architecture)
    print(markdown(result))
    write(result)


if __name__ == "__main__":
    main()
