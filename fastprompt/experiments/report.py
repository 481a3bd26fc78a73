"""What every experiment writes: ``<out>/<name>.md`` (tables with mean ± std over seeds, the
hardware, versions, date and command), ``<out>/<name>.csv`` (one row per run) and PNG plots."""
import csv
import datetime
import math
import platform
import sys
from pathlib import Path
from typing import Dict, List, Sequence

import torch


def std(values: Sequence[float]) -> float:
    """Sample standard deviation (0 for fewer than two values)."""
    values = [float(v) for v in values]
    if len(values) < 2:
        return 0.0
    mean = sum(values) / len(values)
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def mean_std(values: Sequence[float], digits: int = 3) -> str:
    """``mean ± std`` (sample standard deviation; ``mean`` alone for one value)."""
    values = [float(v) for v in values]
    if not values:
        return "-"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std(values):.{digits}f}"


def paired_difference(differences: Sequence[float]) -> str:
    """``+0.012 ± 0.004 (n = 6)``: the mean of paired differences and its standard error."""
    values = [float(v) for v in differences]
    n = len(values)
    mean = sum(values) / n if n else float("nan")
    se = std(values) / math.sqrt(n) if n > 1 else float("nan")
    return f"{mean:+.3f} ± {se:.3f} (standard error, n = {n})"


def clearly_positive(differences: Sequence[float]) -> bool:
    """Whether the mean of paired differences is above zero by more than two standard errors."""
    values = [float(v) for v in differences]
    if len(values) < 2:
        return False
    mean = sum(values) / len(values)
    return mean > 2 * std(values) / math.sqrt(len(values))


def markdown_table(header: Sequence[str], rows: Sequence[Sequence]) -> str:
    lines = ["| " + " | ".join(str(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} CPU"


def environment(device: str) -> str:
    """Hardware, versions and date, one line."""
    import transformers

    if device.startswith("cuda"):
        hardware = torch.cuda.get_device_name(torch.device(device))
    else:
        hardware = f"{cpu_name()}, {torch.get_num_threads()} threads"
    return (f"{hardware}; Python {platform.python_version()}, torch {torch.__version__}, transformers "
            f"{transformers.__version__}; {datetime.date.today().isoformat()}")


class Report:
    """Collects the sections, run rows and figures of one experiment and writes them."""

    def __init__(self, name: str, title: str, out: Path, device: str):
        self.name, self.title, self.out, self.device = name, title, Path(out), device
        self.sections: List[str] = []
        self.rows: List[Dict] = []
        self.out.mkdir(parents=True, exist_ok=True)

    def add(self, text: str) -> None:
        self.sections.append(text)

    def figure(self, fig, suffix: str, caption: str) -> None:
        path = self.out / f"{self.name}_{suffix}.png"
        if fig.get_layout_engine() is None:
            fig.tight_layout()
        fig.savefig(path, dpi=110)
        import matplotlib.pyplot as plt

        plt.close(fig)
        self.sections.append(f"![{caption}]({path.name})\n\n{caption}")

    def write(self, seconds: float) -> Path:
        command = "python -m fastprompt.experiments " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""
        head = [f"# {self.title}", "", f"{environment(self.device)}. `{command.strip()}`, {seconds / 60:.1f} min.", ""]
        md = self.out / f"{self.name}.md"
        md.write_text("\n".join(head) + "\n" + "\n\n".join(self.sections) + "\n")
        if self.rows:
            keys = list(dict.fromkeys(k for row in self.rows for k in row))
            with open(self.out / f"{self.name}.csv", "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.rows)
        return md
