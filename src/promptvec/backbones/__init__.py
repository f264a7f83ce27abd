"""Frozen backbones: causal LM, seq2seq and sentence encoder, behind one interface. Each family is
one module of this package; :data:`BACKBONES` imports them all on its first lookup."""

from promptvec.backbones.base import BACKBONES, Backbone, Batch, Encoded, Generated, LabelSet
from promptvec.backbones.loading import DEFAULT_MODEL, detect_family, load_backbone

__all__ = ["BACKBONES", "DEFAULT_MODEL", "Backbone", "Batch", "Encoded", "Generated", "LabelSet",
           "detect_family", "load_backbone"]
