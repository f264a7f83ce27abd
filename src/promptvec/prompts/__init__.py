"""Prompt modules (what produces the soft prompt for a batch)."""

from promptvec.prompts.base import PROMPT_MODULES, PromptModule, register_prompt_module
from promptvec.prompts.static import StaticPrompt

__all__ = ["PROMPT_MODULES", "PromptModule", "StaticPrompt", "register_prompt_module"]
