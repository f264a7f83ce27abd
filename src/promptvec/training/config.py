"""Training configuration, validated at the boundary, with named presets.

``cpu-small`` is what promptvec ships for small models on CPU (measured on SmolLM2-135M; see
docs/methods.md §1): R = 20, AdamW lr 0.03, 10 % warmup then linear decay, batch 8, max length 256.
``paper-t5`` is the TPV/DTVG papers' T5-base setting: lr 0.3, weight decay 1e-5, 500 warmup
steps, batch 32, max source length 256, R = 100.
"""

from __future__ import annotations

import copy
import difflib
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from promptvec.encoding import DEFAULT_MAX_LENGTH
from promptvec.errors import ConfigError, describe_validation_error
from promptvec.registry import Registry

if TYPE_CHECKING:
    import torch

def _registered_family(name: str) -> str:
    """A family name the backbone registry knows (imported here, on use only: this module stays light)."""
    from promptvec.backbones import BACKBONES

    return BACKBONES.check(name)


#: a backbone family, checked against the registry (so a newly registered family is accepted)
BackboneFamily = Annotated[str, AfterValidator(_registered_family)]

PRESETS: Registry[dict[str, Any]] = Registry("preset")
PRESETS.add("cpu-small", {})
PRESETS.add("paper-t5", {"prompt_length": 100, "lr": 0.3, "weight_decay": 1e-5, "warmup_steps": 500, "batch_size": 32,
                         "max_length": 256, "train_dropout": True, "max_steps": 30000, "eval_every": 1000,
                         "save_every": 100})


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → bf16 where the device computes it natively (a CUDA GPU with bf16 support), else fp32."""
    if precision != "auto":
        return precision
    import torch  # this module stays light: the CLI reads its defaults without loading torch

    return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"


#: what other libraries call a training setting (transformers' TrainingArguments, PEFT's configs)
SETTING_NAMES_ELSEWHERE = {"learning_rate": "lr", "steps": "max_steps", "num_steps": "max_steps",
                           "num_train_steps": "max_steps", "num_virtual_tokens": "prompt_length",
                           "per_device_train_batch_size": "batch_size", "gradient_accumulation_steps": "grad_accum",
                           "seed": "train_seed (and data_seed, origin_seed)", "warmup": "warmup_steps or warmup_ratio",
                           "max_seq_length": "max_length", "bf16": "precision='bf16'", "model_name": "model",
                           "model_name_or_path": "model"}
#: settings TrainConfig once had, and where what they set lives now. Records that hold them are compared
#: without them (:func:`~promptvec.training.trainer.config_differences`): their meaning moved whole into
#: the prompt module, which a run's method settings and folder identify
RETIRED_FIELDS: dict[str, str] = dict.fromkeys(
    ("task_mixing", "mixing_cap", "mixing_temperature", "mixing_first_share", "select_on"),
    "mixed-task batches and target-only selection are the fusion method's (its settings mixing_cap, "
    "mixing_temperature and target_share; in Python, FusionPrompt's mixing)")


class TrainConfig(BaseModel):
    """Everything that defines a prompt-tuning run (and nothing about where it is written)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # `--lr inf` is a typo, never a setting

    model: str = "default"
    family: BackboneFamily | None = Field(None, description="backbone family (default: detected from the "
                                          "model's config; the registered families: promptvec.backbones)")
    task: str = Field(description="built-in task name or task YAML path")
    extra_tasks: list[str] = Field(
        default_factory=list, description="further tasks trained jointly into one prompt (a multi-task prompt, "
        "e.g. SPoT's generic source): by default one task per batch, drawn in proportion to their size, and "
        "selected on the mean over tasks; a prompt module may choose otherwise (Fusion)")
    shots: int | None = Field(None, ge=1, description="few-shot training set size (total); None = all")
    extra_shots: int | None = Field(None, ge=1, description="training examples per extra task (default: shots); "
                                    "a task with fewer gives all of its training split")
    prompt_length: int = Field(20, ge=1, le=2048)
    origin_seed: int = 0
    data_seed: int = 0
    train_seed: int = 0
    init_prompt: str | None = Field(None, description="start from this prompt (PEFT folder) instead of an origin")
    init: Literal["origin", "auto"] = Field(
        "origin", description="where training starts: the origin, or auto = the library prompt, combination or "
        "origin that fits the training examples best (docs/methods.md §9)")
    library: str | None = Field(None, description="prompt library for init auto (default: the one shipped for the "
                                "model)")
    library_exclude: list[str] = Field(
        default_factory=list, description="library tasks init auto leaves out (e.g. the target's own prompt, to "
        "measure transfer to a task the library already holds)")
    lr: float = Field(0.03, gt=0)
    weight_decay: float = Field(1e-5, ge=0)
    warmup_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int | None = Field(None, ge=0, description="overrides warmup_ratio when set")
    max_steps: int = Field(100, ge=1)
    batch_size: int = Field(8, ge=1)
    grad_accum: int = Field(1, ge=1)
    max_grad_norm: float | None = Field(1.0, gt=0)
    max_length: int = Field(DEFAULT_MAX_LENGTH, ge=16, description="tokens of prompt + input + label; inputs are "
                            "cut to fit, never the template or the label")
    chat_template: bool = Field(False, description="wrap inputs in the model's chat template (a user turn)")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16 autocast of the frozen model; auto = bf16 on a GPU that supports it, else fp32 "
        "(CPUs without bf16 instructions run it slower than fp32)")
    compile: bool = Field(False, description="torch.compile the frozen model (dynamic shapes); pays off on GPUs "
                          "for long runs, costs minutes of compilation first")
    log_every: int = Field(10, ge=1, description="steps between reading the buffered training losses from the device "
                           "(and checking they are finite); checkpoints and evaluations read them too")
    train_dropout: bool = Field(False, description="keep the frozen model's dropout active while training")
    eval_every: int = Field(25, ge=1)
    save_every: int = Field(1, ge=1, description="steps between resumable checkpoints (the state is tiny)")
    val_examples: int | None = Field(200, ge=1, description="validation subsample for checkpoint selection")
    test_examples: int | None = Field(500, ge=1, description="test subsample (None = full split)")
    eval_seed: int = Field(1234, description="seed of the validation/test subsamples (fixed across runs)")
    eval_mode: Literal["rank", "generate"] = "rank"
    length_normalize: bool = False
    eval_batch_size: int = Field(32, ge=1)
    select_initial: bool = Field(
        True, description="count the initial prompt (step 0) among the checkpoints selected on validation; off = "
        "choose among trained checkpoints only (sources of task prompt vectors, whose vector would else be zero)")
    early_stopping_patience: int | None = Field(None, ge=1, description="evaluations without improvement")
    report_to: list[Literal["tensorboard", "wandb"]] = Field(
        default_factory=list, description="experiment trackers (Accelerate's names); off by default")

    @model_validator(mode="before")
    @classmethod
    def _known_settings(cls, data: Any) -> Any:
        """An unknown keyword is a ConfigError naming the setting meant (pydantic passes it through as
        it is): ``TrainConfig(learning_rate=0.1)`` says to write ``lr``, a retired setting where it went."""
        unknown = sorted(set(data) - set(cls.model_fields)) if isinstance(data, dict) else []
        if not unknown:
            return data
        name = unknown[0]
        if name in RETIRED_FIELDS:
            raise ConfigError(f"'{name}' is no longer a training setting", RETIRED_FIELDS[name])
        meant = SETTING_NAMES_ELSEWHERE.get(name) or next(iter(difflib.get_close_matches(
            name, list(cls.model_fields), n=1, cutoff=0.6)), None)
        others = f" (and {', '.join(unknown[1:])})" if len(unknown) > 1 else ""
        raise ConfigError(f"unknown training setting '{name}'{others}",
                          f"did you mean {meant}?" if meant else "see TrainConfig's fields (promptvec train --help)")

    @field_validator("task")
    @classmethod
    def _task(cls, v: str) -> str:
        if not v:
            raise ValueError("task must be given")
        return v

    @model_validator(mode="after")
    def _checks(self) -> TrainConfig:
        if self.task in self.extra_tasks or len(set(self.extra_tasks)) != len(self.extra_tasks):
            raise ValueError("extra_tasks must be distinct and must not repeat task")
        if self.init == "auto" and (self.init_prompt or self.extra_tasks):
            raise ValueError("init auto chooses the start of a one-task run: it cannot be combined with "
                             + ("init_prompt" if self.init_prompt else "extra_tasks"))
        if (self.library is not None or self.library_exclude) and self.init != "auto":
            raise ValueError("the library is read by init auto only: add init auto (--init auto) or drop "
                             + ("library" if self.library is not None else "library_exclude"))
        if self.eval_every > self.max_steps:
            self.eval_every = self.max_steps
        return self

    @property
    def warmup(self) -> int:
        """Warmup steps: ``warmup_steps`` when set, else ``warmup_ratio`` of ``max_steps``."""
        return self.warmup_steps if self.warmup_steps is not None else int(round(self.warmup_ratio * self.max_steps))

    @classmethod
    def from_preset(cls, preset: str = "cpu-small", **overrides: Any) -> TrainConfig:
        """A named preset (``cpu-small``, ``paper-t5``) with ``overrides`` (None values keep the preset's)."""
        values = {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}
        try:
            return cls(**values)
        except ValidationError as exc:
            raise ConfigError(f"invalid training configuration: {describe_validation_error(exc)}",
                              "fix the option(s) named") from None


def train_field(name: str) -> Any:
    """:class:`TrainConfig`'s field ``name`` — default, limits and description — for a config that
    exposes the same setting (a suite's budget and backbone, a method's settings), so that each
    default and each limit is written once, here, and every config checks it the same way."""
    return copy.copy(TrainConfig.model_fields[name])


def train_default(name: str) -> Any:
    """The default of :class:`TrainConfig`'s field ``name`` (for command-line options)."""
    field = TrainConfig.model_fields[name]
    return field.get_default(call_default_factory=True)
