"""Micro-benchmarks: every op as fastprompt vs eager reference vs torch.compile(reference).

Run ``python -m fastprompt.bench`` (or ``make bench``) for a table; ``benchmarks/`` runs the
same cases under pytest-benchmark. Cases are defined per op family in
:mod:`fastprompt.bench.cases`.
"""
from fastprompt.bench.core import Case, all_cases, fwd_bwd, measure

__all__ = ["Case", "all_cases", "fwd_bwd", "measure"]
