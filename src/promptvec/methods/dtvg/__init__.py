"""Dynamic Task Vector Grouping: the target vector plus a group of source vectors chosen at every step."""

from promptvec.methods.dtvg.grouping import GROUPINGS, register_grouping, target_similarity
from promptvec.methods.dtvg.method import DTVG, DTVGSettings
from promptvec.methods.dtvg.module import GROUPING_CHOICES, DTVGPrompt

__all__ = ["DTVG", "GROUPINGS", "GROUPING_CHOICES", "DTVGPrompt", "DTVGSettings", "register_grouping",
           "target_similarity"]
