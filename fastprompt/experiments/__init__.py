"""Small-scale reproductions of the papers fastprompt implements, on the real models that install
offline (``python -m fastprompt.experiments NAME [--quick] [--seeds N]``; ``make experiments`` runs
them all). Each experiment module has ``NAME``, ``TITLE`` and ``run(report, quick, seeds, device,
log)``; the report (:class:`fastprompt.experiments.report.Report`) becomes
``experiments/results/NAME.md`` with a CSV of every run and PNG plots."""
from fastprompt.experiments import ept, iapt, task_vectors

EXPERIMENTS = {module.NAME: module for module in (iapt, ept, task_vectors)}

__all__ = ["EXPERIMENTS"]
