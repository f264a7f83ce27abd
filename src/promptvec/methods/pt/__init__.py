from promptvec.methods.pt.method import PromptTuning, PTSettings, RandomInit

__all__ = ["PTSettings", "PromptTuning", "RandomInit"]
