"""The method registry. It lives apart from the methods so that the suite schema and the run plan
can look methods up without importing them (the methods import the plan): the built-in methods are
imported on the first lookup."""

from __future__ import annotations

from promptvec.methods.base import Method
from promptvec.registry import Registry

METHODS: Registry[type[Method]] = Registry("method", populate="promptvec.methods.builtin")
register_method = METHODS.register()
