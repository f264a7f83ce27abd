"""Prompt modules (what produces the soft prompt for a batch): the base class, the static prompt,
and the folder format every module is saved in. The modules of transfer methods live with their
method (``promptvec.methods.<name>``) and register in :data:`PROMPT_MODULES`."""

from promptvec.prompts.base import PROMPT_MODULES, PromptModule, register_prompt_module
from promptvec.prompts.serialization import MODULE_DIR, load_module, save_module
from promptvec.prompts.static import StaticPrompt

__all__ = ["MODULE_DIR", "PROMPT_MODULES", "PromptModule", "StaticPrompt", "load_module", "register_prompt_module",
           "save_module"]
