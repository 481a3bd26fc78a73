"""Finds the modules of a package so that adding a module is all it takes to add to it."""
import importlib
import pkgutil
from typing import Dict, List


def public_modules(package: str, path) -> List[str]:
    """Names of the modules (not subpackages) of `package` whose names do not start with "_"."""
    return [i.name for i in sorted(pkgutil.iter_modules(path), key=lambda i: i.name)
            if not i.name.startswith("_") and not i.ispkg]


def export_submodules(package: str, path, namespace: Dict[str, object]) -> List[str]:
    """Imports every public module of `package`, copies the names of its ``__all__`` into
    `namespace` (the package's globals) and returns them all, in module-name order."""
    exported = []
    for name in public_modules(package, path):
        module = importlib.import_module(f"{package}.{name}")
        for attr in module.__all__:
            namespace[attr] = getattr(module, attr)
            exported.append(attr)
    return exported
