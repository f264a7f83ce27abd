"""Methods a suite (and ``promptvec transfer``) can run, one folder each: its validated settings,
how it runs, its prompt module and the report sections it contributes (``Method.report_sections``).
They register in :data:`METHODS` when :mod:`promptvec.methods.builtin` is imported, which the
registry does on its first lookup. Adding a method: docs/contributing.md."""

from promptvec.suites.method import METHODS, register_method

__all__ = ["METHODS", "register_method"]
