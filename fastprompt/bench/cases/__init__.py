"""Benchmark cases, one module per op family; each exposes ``cases(device, quick) -> list[Case]``."""
FAMILIES = ["rational", "attention_pool"]
FAMILIES += ["vectors"]
FAMILIES += ["multispace_project"]
FAMILIES += ["ept"]
