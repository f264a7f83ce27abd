"""Prompt modules (what produces the soft prompt for a batch)."""

from promptvec.prompts.attempt import AttemptPrompt
from promptvec.prompts.base import PROMPT_MODULES, PromptModule, register_prompt_module
from promptvec.prompts.dtvg import DTVGPrompt
from promptvec.prompts.fusion import FusionPrompt
from promptvec.prompts.grouping import GROUPINGS
from promptvec.prompts.serialization import MODULE_DIR, load_module, save_module
from promptvec.prompts.static import StaticPrompt

__all__ = ["GROUPINGS", "MODULE_DIR", "PROMPT_MODULES", "AttemptPrompt", "DTVGPrompt", "FusionPrompt",
           "PromptModule", "StaticPrompt", "load_module", "register_prompt_module", "save_module"]
