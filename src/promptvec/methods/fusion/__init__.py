"""Dynamic Prompt Fusion: a prompt pool mixed per task and per input, trained jointly with the sources."""

from promptvec.methods.fusion.method import Fusion, FusionSettings
from promptvec.methods.fusion.module import FusionPrompt

__all__ = ["Fusion", "FusionPrompt", "FusionSettings"]
