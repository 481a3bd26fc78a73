"""Writes requirements/constraints.txt: the exact versions, in the running environment, of every
package in requirements/tested.txt and of everything those packages need (their dependency
closure; packages marked no-deps contribute themselves only).

    .venv/bin/python tools/pin_requirements.py            # after a passing `make test`
"""
import importlib.metadata as metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
TESTED = ROOT / "requirements" / "tested.txt"
CONSTRAINTS = ROOT / "requirements" / "constraints.txt"


def read_tested():
    """[(name, no_deps)] from requirements/tested.txt."""
    entries = []
    for line in TESTED.read_text().splitlines():
        spec, _, marker = line.partition("#")
        spec = spec.strip()
        if spec:
            entries.append((spec, "no-deps" in marker))
    return entries


def closure(entries):
    pins, seen = {}, set()
    todo = [(Requirement(name), no_deps) for name, no_deps in entries]
    while todo:
        req, no_deps = todo.pop()
        key = canonicalize_name(req.name)
        extras = frozenset(req.extras)
        if (key, extras) in seen:
            continue
        seen.add((key, extras))
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            sys.exit(f"{req.name} is not installed in {sys.prefix}; run `make test` first")
        pins[key] = (dist.metadata["Name"], dist.version)
        if no_deps:
            continue
        for text in dist.requires or []:
            dep = Requirement(text)
            if dep.marker is None or any(dep.marker.evaluate({"extra": e}) for e in ("", *extras)):
                todo.append((dep, False))
    return pins


def main():
    pins = closure(read_tested())
    lines = [
        "# Exact versions of requirements/tested.txt and their dependencies, as tested.",
        f"# Written by tools/pin_requirements.py on Python {sys.version.split()[0]}.",
    ]
    lines += [f"{name}=={version}" for _, (name, version) in sorted(pins.items())]
    CONSTRAINTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(pins)} pins to {CONSTRAINTS.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
