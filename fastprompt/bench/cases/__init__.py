"""Benchmark cases, one module per op family; each exposes ``cases(device, quick) -> list[Case]``.

The families are the public modules of this package, found by scanning it (helpers shared by
the case modules live in ``_common``). Adding a family is adding a module here.
"""
from fastprompt._discover import public_modules

FAMILIES = public_modules(__name__, __path__)
