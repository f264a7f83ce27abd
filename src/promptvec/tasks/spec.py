"""A task = data source + template + labels (or free-text answers) + metric, validated at the boundary.

Key names follow lm-evaluation-harness's task YAML where they mean the same thing
(``task``, ``dataset_path``, ``dataset_name``, ``training_split``, ``validation_split``,
``test_split``, ``doc_to_text``, ``doc_to_target``, ``doc_to_choice``, ``output_type``,
``generation_kwargs``, ``metric_list``). Built-in tasks and user YAML tasks are the same object,
so they behave identically.

Three output types: ``multiple_choice`` (a label, scored by ranking the verbalizations),
``regression`` (a number, ranked over integer bins) and ``generate_until`` (free text: trained on
the first acceptable answer, evaluated by greedy decoding against all of them).
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import jinja2
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptvec.errors import DataError
from promptvec.tasks.lm_eval_yaml import literal_answers
from promptvec.tasks.templates import SANDBOX, TemplateRefused
from promptvec.tasks.templates import render as render_template

_JINJA = SANDBOX


# The metric names a task may list: those of ``promptvec.evaluation.metrics`` (labels and numbers) and of
# ``promptvec.evaluation.text_metrics`` (free text). Spelled out here so that reading a task does not import
# the evaluation stack; a test checks they are exactly the registries' names.
LABEL_METRICS = ("acc", "f1", "macro_f1", "mcc", "pearson", "spearman")
TEXT_METRIC_NAMES = ("exact_match", "squad_f1", "rouge_l", "numeric_match")
OutputType = Literal["multiple_choice", "regression", "generate_until"]


class MetricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: Literal["acc", "f1", "macro_f1", "mcc", "pearson", "spearman",
                    "exact_match", "squad_f1", "rouge_l", "numeric_match"]


#: characters that show nothing (zero-width spaces and joiners, the byte-order mark, soft hyphen)
_INVISIBLE = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"))


def readable(text: str) -> str:
    """What a reader sees of a label: NFC-normalised, invisible characters removed, outer space
    stripped — two choices that are equal here cannot be told apart by a person (nor, reliably, by a
    tokenizer)."""
    return unicodedata.normalize("NFC", text).translate(_INVISIBLE).strip()


class GenerationSpec(BaseModel):
    """How a ``generate_until`` task decodes (lm-eval's ``generation_kwargs``; defaults are lm-eval's).
    Decoding is greedy and stops at the first ``until`` string (cut from the output) or at EOS.
    ``max_gen_toks`` also caps the training target: a longer answer is cut to it (the run counts how many)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_gen_toks: int = Field(256, ge=1, le=4096, strict=True,
                              description="most tokens generated (and trained on) per answer (an integer)")
    until: list[str] = Field(default_factory=lambda: ["\n\n"], description="stop strings, cut from the output")

    @field_validator("until")
    @classmethod
    def _until(cls, v: list[str]) -> list[str]:
        if any(not s for s in v):
            raise ValueError("until holds an empty string, which would stop before the first token")
        return v


class TaskSpec(BaseModel):
    """Everything needed to turn raw rows into (prompt text, label) pairs and score predictions."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task: str = Field(description="task name")
    description: str = ""
    group: str = Field("", description="task type, e.g. nli / sentiment / topic (for similarity plots)")
    # where the data comes from
    dataset_path: str | None = Field(None, description="Hugging Face dataset id (parquet-backed)")
    dataset_name: str | None = Field(None, description="Hugging Face dataset config")
    data_files: dict[str, str] | None = Field(None, description="split -> local file (jsonl/json/csv/tsv/parquet)")
    training_split: str = "train"
    validation_split: str | None = Field(
        "validation", description="Hub split used for validation; null = carve from train (stratified, seed 42)"
    )
    test_split: str = "test"
    columns: dict[str, str] = Field(
        default_factory=dict, description="rename Hub columns to the template's field names: {field: hub_column}"
    )
    # how a row becomes text
    doc_to_text: str = Field(description="Jinja template over the row's fields, e.g. 'Review: {{text}}\\nSentiment:'")
    doc_to_target: str = Field("label", description="column holding the label (or a Jinja template rendering it); "
                               "generate_until: a column holding the answer (text, or a list of acceptable answers) "
                               "or a Jinja template over columns")
    labels: list[str] | None = Field(None, description="canonical label names, in a fixed order")
    doc_to_choice: list[str] | dict[str, str] | None = Field(
        None, description="verbalization per label (list parallel to labels, or {label: verbalization})"
    )
    label_map: dict[str, str] = Field(
        default_factory=dict, description="raw label value in the data (as text) -> canonical label"
    )
    target_delimiter: str = Field(" ", description="put between the input text and the verbalization (causal LMs)")
    output_type: OutputType = "multiple_choice"
    generation_kwargs: GenerationSpec = Field(default_factory=GenerationSpec,
                                              description="generate_until: max_gen_toks and until")
    no_answer_target: str | None = Field(
        None, description="generate_until: the text trained for a row whose answer list is empty (SQuAD v2: "
        "'unanswerable'); a prediction equal to it (normalised) counts as the empty answer. None: such rows are "
        "refused")
    regression_range: tuple[float, float] | None = Field(
        None, description="for regression: gold values are rounded to integer bins in this range"
    )
    metric_list: list[MetricSpec] = Field(default_factory=lambda: [MetricSpec(metric="acc")])
    fields: list[str] | None = Field(None, description="input fields (default: the template's variables)")
    notes: list[str] = Field(default_factory=list, description="how an lm-eval task file was read: keys read but "
                             "not used, scoring details (printed when the task is loaded)")

    @field_validator("task")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v):
            raise ValueError("task name must be non-empty and without spaces")
        if "/" in v or "\\" in v or v.startswith("."):  # names become folder names (data, runs)
            raise ValueError("task name must not contain '/' or '\\' or start with '.'")
        return v

    @field_validator("doc_to_text")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            _JINJA.parse(v)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"doc_to_text is not a valid template: {exc.message} (line {exc.lineno})") from None
        return v

    @field_validator("doc_to_target")
    @classmethod
    def _target(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("doc_to_target is empty: name the answer column or give a template")
        if is_template(v):
            try:
                _JINJA.parse(v)
            except jinja2.TemplateSyntaxError as exc:
                raise ValueError(f"doc_to_target is not a valid template: {exc.message} (line {exc.lineno})") \
                    from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
        text_metrics = [m for m in self.metrics if m in TEXT_METRIC_NAMES]
        if self.generates:
            if "metric_list" not in self.model_fields_set:
                raise ValueError(f"a generate_until task needs metric_list, e.g. [{{metric: exact_match}}] (one of "
                                 f"{list(TEXT_METRIC_NAMES)})")
            label_metrics = [m for m in self.metrics if m not in TEXT_METRIC_NAMES]
            if label_metrics:
                raise ValueError(f"a generate_until task is scored on text: metric(s) {label_metrics} need labels; "
                                 f"use {list(TEXT_METRIC_NAMES)}")
            if self.labels or self.doc_to_choice or self.label_map:
                raise ValueError("a generate_until task has answers, not labels: drop labels/doc_to_choice/label_map")
            return self
        if text_metrics:
            raise ValueError(f"metric(s) {text_metrics} score generated text: set output_type: generate_until, "
                             f"or use {list(LABEL_METRICS)}")
        if self.output_type == "regression":
            if self.regression_range is None:
                raise ValueError("regression tasks need regression_range: [low, high]")
            lo, hi = self.regression_range
            if not (math.isfinite(lo) and math.isfinite(hi) and hi > lo):
                raise ValueError("regression_range must be two finite numbers with low < high")
        else:
            if not self.labels and not isinstance(self.doc_to_choice, dict) and not self.doc_to_choice:
                raise ValueError("a multiple_choice task needs `labels` or `doc_to_choice`")
            if isinstance(self.doc_to_choice, list) and self.labels and len(self.doc_to_choice) != len(self.labels):
                raise ValueError(
                    f"doc_to_choice has {len(self.doc_to_choice)} entries but labels has {len(self.labels)}"
                )
            if isinstance(self.doc_to_choice, dict) and self.labels and set(self.doc_to_choice) != set(self.labels):
                raise ValueError("doc_to_choice keys must be exactly the labels")
            for what, values in (("labels", self.label_names), ("verbalizations (doc_to_choice)", self.verbalizations)):
                blank = [v for v in values if not readable(v)]
                if blank:
                    raise ValueError(f"{what} include {blank}: an empty or invisible choice cannot be read or "
                                     "ranked; give each label visible text")
                seen: dict[str, str] = {}
                for value in values:
                    twin = seen.setdefault(readable(value), value)
                    if twin is not value:
                        raise ValueError(f"{what} repeat {sorted({twin, value})} (the same text once Unicode is "
                                         "normalised and invisible characters removed): two labels that read the "
                                         "same can never be told apart; give each label its own text")
            bad = sorted(set(self.label_map.values()) - set(self.label_names))
            if bad:
                raise ValueError(f"label_map maps to unknown labels {bad}; known: {self.label_names}")
        return self

    # ---- derived views -------------------------------------------------------------------
    @cached_property
    def label_names(self) -> list[str]:
        if self.generates:
            return []
        if self.output_type == "regression":
            lo, hi = self.regression_range  # type: ignore[misc]
            return [str(v) for v in range(int(math.ceil(lo)), int(math.floor(hi)) + 1)]
        if self.labels:
            return list(self.labels)
        if isinstance(self.doc_to_choice, dict):
            return list(self.doc_to_choice)
        return list(self.doc_to_choice or [])

    @cached_property
    def verbalizations(self) -> list[str]:
        """Text of each label as the model should produce it (without the target delimiter)."""
        if isinstance(self.doc_to_choice, dict):
            return [self.doc_to_choice[name] for name in self.label_names]
        if isinstance(self.doc_to_choice, list):
            return list(self.doc_to_choice)
        return list(self.label_names)

    @cached_property
    def template_fields(self) -> list[str]:
        if self.fields:
            return list(self.fields)
        from jinja2 import meta

        return sorted(meta.find_undeclared_variables(_JINJA.parse(self.doc_to_text)))

    @property
    def metrics(self) -> list[str]:
        """The names of the task's metrics, primary first."""
        return [m.metric for m in self.metric_list]

    @property
    def primary_metric(self) -> str:
        """The metric used for checkpoint selection and tables (the first in metric_list)."""
        return self.metrics[0]

    @property
    def is_regression(self) -> bool:
        """Numeric labels (e.g. stsb): scored by the expected value over bins, with correlations."""
        return self.output_type == "regression"

    @property
    def generates(self) -> bool:
        """Free-text answers (``generate_until``): no label set; evaluated by decoding."""
        return self.output_type == "generate_until"

    def raw_target(self, row: dict[str, Any], source: str) -> Any:
        """A row's label as the data gives it: the ``doc_to_target`` column, or the rendered template
        (lm-eval style, e.g. ``{{choices.label.index(answerKey)}}``)."""
        if not is_template(self.doc_to_target):
            return row[self.doc_to_target]
        try:
            return render_template(self.doc_to_target, row).strip()
        except jinja2.UndefinedError as exc:
            raise DataError(f"{source}: doc_to_target of task '{self.task}' needs a missing field "
                            f"({exc.message})", f"row keys are {sorted(row)}; fix the data or the template") from None
        except TemplateRefused as exc:
            raise DataError(f"{source}: doc_to_target of task '{self.task}' was stopped: {exc}",
                            "simplify the template (task templates run in a sandbox with size and time limits)") \
                from None

    def answers_of(self, row: dict[str, Any], source: str) -> tuple[str, ...]:
        """The acceptable answers of one row of a generate_until task: the ``doc_to_target`` column (a
        text, a number, a list of texts, or the Hugging Face QA layout ``{"text": [...], ...}``) or the
        rendered template. Empty for an unanswerable row."""
        if is_template(self.doc_to_target):
            rendered = str(self.raw_target(row, source))
            # a list literal is several acceptable answers (lm-eval reads `{{answer.aliases}}` so)
            return literal_answers(rendered) or (rendered,)
        value = row[self.doc_to_target]
        if isinstance(value, dict) and isinstance(value.get("text"), list):
            value = value["text"]
        if isinstance(value, str) or (isinstance(value, int | float) and not isinstance(value, bool)):
            return (str(value),)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value)
        raise DataError(f"{source}: answer column '{self.doc_to_target}' holds {type(value).__name__} {value!r:.60}",
                        "give a text, a number or a list of texts per row (or a doc_to_target template)")

    def training_target(self, answers: tuple[str, ...], source: str) -> str:
        """The text a generate_until row is trained on: its first answer, or ``no_answer_target``."""
        if answers:
            return answers[0]
        if self.no_answer_target is None:
            raise DataError(f"{source}: row has no answer (empty '{self.doc_to_target}')",
                            "fix the row, or set no_answer_target (e.g. 'unanswerable') if the task has "
                            "unanswerable questions")
        return self.no_answer_target

    def render(self, fields: dict[str, Any], source: str = "") -> str:
        """Fill the template with one row's fields."""
        try:
            return render_template(self.doc_to_text, fields)
        except jinja2.UndefinedError as exc:
            raise DataError(
                f"{source or 'a row'}: the template of task '{self.task}' needs a missing field ({exc.message})",
                f"give every row the fields {self.template_fields}",
            ) from None
        except TemplateRefused as exc:
            raise DataError(f"{source or 'a row'}: the template of task '{self.task}' was stopped: {exc}",
                            "simplify doc_to_text (task templates run in a sandbox with size and time limits)") \
                from None

    def canonical_label(self, raw: Any, source: str) -> str | float:
        """Map a raw label value from the data to the task's canonical label (or float for regression)."""
        if self.is_regression:
            try:
                value = float(raw)
            except (TypeError, ValueError):
                raise DataError(f"{source}: label {raw!r} is not a number", "regression labels must be numbers") \
                    from None
            if not math.isfinite(value):
                raise DataError(f"{source}: label {raw!r} is not finite", "fix or drop that row")
            return value
        key = str(raw)
        if isinstance(raw, bool):
            key = str(raw)
        elif isinstance(raw, float) and raw.is_integer():
            key = str(int(raw))
        if key in self.label_map:
            return self.label_map[key]
        if key in self.label_names:
            return key
        raise DataError(
            f"{source}: label {raw!r} is not a label of task '{self.task}'",
            f"known labels: {self.label_names}" + (f"; mapped raw values: {sorted(self.label_map)}" if self.label_map
                                                   else "") + " — fix the row or add it to label_map",
        )

    def bin_of(self, value: float) -> str:
        """Regression: the label bin (rounded integer within range) used for ranking and stratification."""
        lo, hi = self.regression_range  # type: ignore[misc]
        return str(int(min(max(round(value), math.ceil(lo)), math.floor(hi))))


def is_template(text: str) -> bool:
    """Whether a ``doc_to_target`` is a Jinja template rather than a column name."""
    return "{{" in text or "{%" in text


@dataclass(frozen=True)
class Example:
    """One row: its input fields, canonical label and where it came from (``file:line``). For a
    generate_until task, ``label`` is the training target and ``answers`` every acceptable answer
    (empty: unanswerable)."""

    fields: dict[str, Any]
    label: str | float
    source: str = ""
    text: str = field(default="", compare=False)
    answers: tuple[str, ...] = ()
