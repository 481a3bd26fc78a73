"""python -m fastprompt.bench [--device cpu|cuda] [--ops rational ...] [--quick] [--output PREFIX]

Prints one row per case: median time of every provider, the ratio of each baseline to
fastprompt (>1 means fastprompt is faster), and the fraction of the measured memory bandwidth
(bytes that must move / time / copy bandwidth) or the achieved FLOP/s. With --output, writes
PREFIX.csv and PREFIX.json (plus device, torch version and date).
"""
import argparse
import csv
import datetime
import json
import platform
import sys
from pathlib import Path

import torch

from fastprompt.bench.core import all_cases, measure, median, memory_bandwidth


def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def run(device: str, quick: bool, ops, min_time: float):
    bandwidth = memory_bandwidth(device)
    rows = []
    for case in all_cases(device, quick, ops):
        inputs = case.make()
        times = {}
        for provider, fn in case.providers.items():
            try:
                times[provider] = median(measure(fn, inputs, device, min_time=min_time))
            except Exception as exc:  # a baseline that cannot run this case is reported, not fatal
                print(f"  {case.name} {provider}: failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        ours = times.get("fastprompt")
        row = {"op": case.op, "shape": case.shape, "dtype": str(case.dtype).replace("torch.", ""),
               "device": device, "mode": case.mode, "note": case.note}
        for provider, t in times.items():
            row[f"{provider}_ms"] = round(t * 1e3, 4)
            if provider != "fastprompt" and ours:
                row[f"x_vs_{provider}"] = round(t / ours, 2)
        if ours and case.bytes_moved:
            row["GB/s"] = round(case.bytes_moved / ours / 1e9, 1)
            row["bw_fraction"] = round(case.bytes_moved / ours / bandwidth, 3)
        if ours and case.flops:
            row["TFLOP/s"] = round(case.flops / ours / 1e12, 3)
        rows.append(row)
        print(format_row(row), flush=True)
        del inputs
    return rows, bandwidth


def format_row(row) -> str:
    keys = [k for k in row if k not in ("op", "shape", "dtype", "device", "mode", "note")]
    body = "  ".join(f"{k}={row[k]}" for k in keys)
    return f"{row['op']:<18} {row['shape']:<40} {row['dtype']:<9} {row['mode']:<8} {body}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--ops", nargs="*", help="op families to run (default: all)")
    parser.add_argument("--quick", action="store_true", help="small sizes (smoke test)")
    parser.add_argument("--min-time", type=float, default=1.0, help="seconds of timing per provider")
    parser.add_argument("--output", type=Path, help="write PREFIX.csv and PREFIX.json")
    args = parser.parse_args(argv)

    print(f"device: {device_name(args.device)}  torch {torch.__version__}")
    rows, bandwidth = run(args.device, args.quick, args.ops, args.min_time)
    print(f"measured copy bandwidth: {bandwidth / 1e9:.1f} GB/s")
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        meta = {"device": device_name(args.device), "torch": torch.__version__,
                "date": datetime.date.today().isoformat(), "copy_bandwidth_GBps": round(bandwidth / 1e9, 1)}
        Path(f"{args.output}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
        fields = []
        for row in rows:
            fields += [k for k in row if k not in fields]
        with open(f"{args.output}.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        print(f"wrote {args.output}.csv and {args.output}.json")


if __name__ == "__main__":
    main()
