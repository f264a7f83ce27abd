"""Frozen backbones: causal LM, seq2seq and sentence encoder, behind one interface."""

from promptvec.backbones import causal, encoder, seq2seq  # noqa: F401  (register the families)
from promptvec.backbones.base import BACKBONES, Backbone, Batch, Encoded, LabelSet
from promptvec.backbones.loading import DEFAULT_MODEL, detect_family, load_backbone

__all__ = ["BACKBONES", "DEFAULT_MODEL", "Backbone", "Batch", "Encoded", "LabelSet", "detect_family",
           "load_backbone"]
