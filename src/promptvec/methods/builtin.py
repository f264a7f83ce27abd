"""Importing this module registers every built-in method (and its prompt module)."""

from promptvec.methods import attempt, auto, dtvg, fusion, multi_source, pt, single_source, spot, tpv_init, zero

__all__ = ["attempt", "auto", "dtvg", "fusion", "multi_source", "pt", "single_source", "spot", "tpv_init", "zero"]
