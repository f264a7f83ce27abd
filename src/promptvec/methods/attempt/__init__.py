"""ATTEMPT (Asai et al. 2022): per-input attention over frozen source prompts and a trainable target prompt."""

from promptvec.methods.attempt.method import Attempt, AttemptSettings
from promptvec.methods.attempt.module import AttemptPrompt

__all__ = ["Attempt", "AttemptPrompt", "AttemptSettings"]
