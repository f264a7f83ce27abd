"""Prompt libraries: source prompts that ship with a model, and ``init: auto``, which chooses a new
task's starting prompt from them using only the task's training examples."""

from promptvec.library.auto import AutoChoice, AutoPolicy, SourcePrompt, choose_start
from promptvec.library.library import LIBRARY_FILE, LibraryEntry, LibraryManifest, PromptLibrary

__all__ = ["LIBRARY_FILE", "AutoChoice", "AutoPolicy", "LibraryEntry", "LibraryManifest", "PromptLibrary",
           "SourcePrompt", "choose_start"]
