"""python -m fastprompt.experiments NAME [NAME ...] [--model minilm|smollm2] [--quick] [--seeds N] [--out DIR]
[--device D]"""
import argparse
import sys
import time

import torch

from fastprompt.experiments import EXPERIMENTS
from fastprompt.experiments.common import BACKBONES
from fastprompt.experiments.report import Report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m fastprompt.experiments", description=__doc__)
    parser.add_argument("names", nargs="+", metavar="NAME", help=f"one or more of {sorted(EXPERIMENTS)}, or all")
    parser.add_argument("--model", default="minilm", choices=sorted(BACKBONES),
                        help="the backbone: all-MiniLM-L6-v2 (default; reports NAME.md) or SmolLM2-135M-Instruct "
                             "(reports NAME_smollm2.md)")
    parser.add_argument("--quick", action="store_true", help="a smoke run (fewer steps, tasks and seeds)")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per configuration (default 3; quick 2)")
    parser.add_argument("--out", default="experiments/results", help="folder of the reports")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    names = sorted(EXPERIMENTS) if args.names == ["all"] else args.names
    unknown = [n for n in names if n not in EXPERIMENTS]
    if unknown:
        parser.error(f"unknown experiment {unknown[0]!r}: expected one of {sorted(EXPERIMENTS)} or all")
    if args.seeds is not None and args.seeds < 1:
        parser.error(f"--seeds: expected at least 1, got {args.seeds}")
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()  # the fresh heads' "newly initialized" report
    transformers.utils.logging.disable_progress_bar()
    backbone = BACKBONES[args.model]
    for name in names:
        module = EXPERIMENTS[name]
        title = module.TITLE.format(model=backbone.title) + (" (--quick)" if args.quick else "")
        report = Report(name if backbone.name == "minilm" else f"{name}_{backbone.name}", title, args.out, args.device)
        start = time.perf_counter()
        module.run(report, quick=args.quick, seeds=args.seeds, device=args.device, backbone=backbone,
                   log=lambda msg: print(f"[{report.name} {time.perf_counter() - start:.0f}s] {msg}", file=sys.stderr,
                                         flush=True))
        path = report.write(time.perf_counter() - start)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
