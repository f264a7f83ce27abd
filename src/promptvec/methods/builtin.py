"""Importing this module registers every method: each sub-package of :mod:`promptvec.methods` (one
folder per method) is imported, and registers itself with ``@register_method`` — so a new method is
one new folder, listed nowhere else."""

from __future__ import annotations

import importlib
import pkgutil

import promptvec.methods as _package

for _module in pkgutil.iter_modules(_package.__path__):
    if _module.ispkg:
        importlib.import_module(f"{_package.__name__}.{_module.name}")
