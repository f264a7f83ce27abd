"""How inputs are turned into token ids for a backbone: the settings every family reads, kept in a
module without torch so that configurations (:class:`~promptvec.training.config.TrainConfig`, suite
files) and backbones take their defaults from one place."""

from __future__ import annotations

#: tokens of prompt + input + label: a backbone's and a training configuration's default
DEFAULT_MAX_LENGTH = 256
