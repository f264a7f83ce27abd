"""A task = data source + template + labels + metric, validated at the boundary.

Key names follow lm-evaluation-harness's task YAML where they mean the same thing
(``task``, ``dataset_path``, ``dataset_name``, ``training_split``, ``validation_split``,
``test_split``, ``doc_to_text``, ``doc_to_target``, ``doc_to_choice``, ``metric_list``).
Built-in tasks and user YAML tasks are the same object, so they behave identically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any, Literal

import jinja2
import jinja2.sandbox
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from promptvec.errors import DataError

_JINJA = jinja2.sandbox.SandboxedEnvironment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)


@lru_cache(maxsize=256)
def _compiled(template: str) -> jinja2.Template:
    return _JINJA.from_string(template)


class MetricSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: Literal["acc", "f1", "macro_f1", "mcc", "pearson", "spearman"]


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
    doc_to_target: str = Field("label", description="column holding the label")
    labels: list[str] | None = Field(None, description="canonical label names, in a fixed order")
    doc_to_choice: list[str] | dict[str, str] | None = Field(
        None, description="verbalization per label (list parallel to labels, or {label: verbalization})"
    )
    label_map: dict[str, str] = Field(
        default_factory=dict, description="raw label value in the data (as text) -> canonical label"
    )
    target_delimiter: str = Field(" ", description="put between the input text and the verbalization (causal LMs)")
    output_type: Literal["multiple_choice", "regression"] = "multiple_choice"
    regression_range: tuple[float, float] | None = Field(
        None, description="for regression: gold values are rounded to integer bins in this range"
    )
    metric_list: list[MetricSpec] = Field(default_factory=lambda: [MetricSpec(metric="acc")])
    fields: list[str] | None = Field(None, description="input fields (default: the template's variables)")

    @field_validator("task")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or any(c.isspace() for c in v):
            raise ValueError("task name must be non-empty and without spaces")
        return v

    @field_validator("doc_to_text")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            _JINJA.parse(v)
        except jinja2.TemplateSyntaxError as exc:
            raise ValueError(f"doc_to_text is not a valid template: {exc.message} (line {exc.lineno})") from None
        return v

    @model_validator(mode="after")
    def _consistent(self) -> TaskSpec:
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
            bad = sorted(set(self.label_map.values()) - set(self.label_names))
            if bad:
                raise ValueError(f"label_map maps to unknown labels {bad}; known: {self.label_names}")
        return self

    # ---- derived views -------------------------------------------------------------------
    @cached_property
    def label_names(self) -> list[str]:
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
        return [m.metric for m in self.metric_list]

    @property
    def primary_metric(self) -> str:
        """The metric used for checkpoint selection and tables (the first in metric_list)."""
        return self.metrics[0]

    @property
    def is_regression(self) -> bool:
        return self.output_type == "regression"

    def render(self, fields: dict[str, Any], source: str = "") -> str:
        """Fill the template with one row's fields."""
        try:
            return _compiled(self.doc_to_text).render(**fields)
        except jinja2.UndefinedError as exc:
            raise DataError(
                f"{source or 'a row'}: the template of task '{self.task}' needs a missing field ({exc.message})",
                f"give every row the fields {self.template_fields}",
            ) from None

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


@dataclass(frozen=True)
class Example:
    """One row: its input fields, canonical label and where it came from (``file:line``)."""

    fields: dict[str, Any]
    label: str | float
    source: str = ""
    text: str = field(default="", compare=False)
