"""How inputs are turned into token ids for a backbone: the settings every family reads, kept in a
module without torch so that configurations (:class:`~promptvec.training.config.TrainConfig`, suite
files) and backbones take their defaults from one place."""

from __future__ import annotations

from dataclasses import dataclass

#: tokens of prompt + input + label: a backbone's and a training configuration's default
DEFAULT_MAX_LENGTH = 256


@dataclass(frozen=True)
class EncodingSpec:
    """The settings a backbone encodes inputs with. Immutable, and held by a backbone *view*
    (:meth:`~promptvec.backbones.Backbone.with_encoding`): a run that wants other settings gets its own
    view of the shared model instead of changing the backbone it was lent, so one run's settings can
    never leak into the next run of a worker that caches the model."""

    #: tokens of prompt + input + label; inputs are cut to fit, never the template or the label
    max_length: int = DEFAULT_MAX_LENGTH
    #: wrap each templated input as a user turn of the tokenizer's chat template (instruction-tuned models)
    chat_template: bool = False
