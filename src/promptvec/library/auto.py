"""``init: auto`` — choose where a new task's prompt tuning starts from a library of source prompts,
using only the target's own training examples (docs/methods.md §9).

A user with 16 labelled examples has no separate validation set to spend on choosing a source, and a
method that chose on validation would see more labels than the baselines it is compared with. So
every candidate start is scored *before training* on exactly the examples the run will train on: by
rank-classification accuracy on them (label tasks), ties broken by the quantity training minimises — the
mean loss on the gold labels or answers (:meth:`Backbone.loss`), which is also the score for free-text
tasks and for ``score: loss``. Each candidate costs one pass over the examples, its prompt's keys/values
computed once: a label task's loss is read from the same rank-classification scores as its accuracy
(:meth:`Backbone.label_loss`). The loss is defined for label and free-text tasks alike, and for any
backbone family.

Candidates: the run's own origin (what plain prompt tuning starts from), every source prompt, and the
origin plus the summed task prompt vectors of the ``combine`` best-scoring sources (tpv-init's start).
The best-scoring start is taken — unless it does not beat both *no prompt* and the origin,
in which case the run falls back to the origin (plain prompt tuning) and says so. The policy's
settings were chosen on the library's own tasks, leave-one-task-out, and then frozen
(docs/methods.md §9); :class:`AutoPolicy`'s defaults are that choice.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field

from promptvec.backbones import Backbone
from promptvec.errors import ConfigError
from promptvec.evaluation import evaluate
from promptvec.tasks import Example, TaskSpec, subsample
from promptvec.vectors import Origin, TaskPromptVector

NO_PROMPT = "no prompt"
ORIGIN = "origin"


class AutoPolicy(BaseModel):
    """How ``init: auto`` chooses (defaults: the policy frozen in docs/methods.md §9)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    score: Literal["loss", "accuracy"] = Field(
        "accuracy", description="rank candidates by rank-classification accuracy on the target's training "
        "examples (label tasks; ties broken by the loss; free-text tasks: the loss), or by the mean training loss "
        "on them (lower is better)")
    combine: int = Field(3, ge=0, description="also try the origin plus the summed task prompt vectors of the 2..N "
                         "best single sources (0 = single sources only)")
    max_examples: int = Field(256, ge=1, description="score on at most this many of the training examples (a "
                              "seeded subsample when the run trains on more)")
    batch_size: int = Field(32, ge=1, description="examples per forward pass while scoring")


def policy_field(name: str) -> Any:
    """:class:`AutoPolicy`'s field ``name`` (default, limits, description) for a config exposing it."""
    return copy.copy(AutoPolicy.model_fields[name])


@dataclass(frozen=True)
class SourcePrompt:
    """One library prompt a target may start from: the tuned prompt and its task prompt vector."""

    task: str
    prompt: torch.Tensor  # [R, d]
    vector: TaskPromptVector


@dataclass
class AutoChoice:
    """What :func:`choose_start` decided: the initial prompt (None = the run's origin) and the record."""

    prompt: torch.Tensor | None
    chosen: str
    fell_back: bool
    candidates: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0

    def record(self, policy: AutoPolicy) -> dict[str, Any]:
        """``init.auto`` of the run record: every candidate with its scores, the choice, the time spent."""
        return {"policy": policy.model_dump(), "chosen": self.chosen, "fell_back": self.fell_back,
                "candidates": self.candidates, "seconds": round(self.seconds, 3)}


def _losses(backbone: Backbone, task: TaskSpec, examples: Sequence[Example], prompt: torch.Tensor | None,
            batch_size: int) -> float:
    """Mean training loss of a free-text task's ``examples`` under a fixed prompt (None = no prompt),
    weighted by batch size."""
    rows = 0 if prompt is None else prompt.shape[0]
    encoded = backbone.encode(task, list(examples), rows)
    fixed = torch.zeros(0, backbone.dim, device=backbone.device) if prompt is None else \
        backbone.prepare_prompt(prompt.to(backbone.device))
    total, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, len(encoded), batch_size):
            items = encoded[start: start + batch_size]
            batch = backbone.collate(task, items, train=True).to(backbone.device)
            total += float(backbone.loss(task, batch, fixed)) * len(items)
            count += len(items)
    return total / count


def _candidate_scores(backbone: Backbone, task: TaskSpec, examples: Sequence[Example], prompt: torch.Tensor | None,
                      policy: AutoPolicy) -> dict[str, float]:
    """A candidate's loss (and, when the policy ranks by it, accuracy) on ``examples``. A label task's loss
    comes from the same rank-classification pass as its accuracy (:meth:`Backbone.label_loss`): one pass
    per candidate; a free-text task has only the loss."""
    if task.generates:
        return {"loss": _losses(backbone, task, examples, prompt, policy.batch_size)}
    result = evaluate(backbone, task, list(examples), prompt, batch_size=policy.batch_size)
    gold = torch.tensor([backbone.label_index(task, example) for example in examples])
    scores = {"loss": float(backbone.label_loss(task, torch.tensor(result.scores), gold))}
    if policy.score == "accuracy":
        scores["accuracy"] = result.metrics.get("acc", result.metrics[task.primary_metric])
    return scores


def _better(a: dict[str, float], b: dict[str, float], policy: AutoPolicy) -> bool:
    """Whether scores ``a`` beat ``b`` strictly under the policy."""
    if policy.score == "accuracy" and "accuracy" in a and a["accuracy"] != b["accuracy"]:
        return a["accuracy"] > b["accuracy"]
    return a["loss"] < b["loss"]


def _sort_key(scores: dict[str, float], policy: AutoPolicy) -> tuple[float, float]:
    primary = -scores["accuracy"] if policy.score == "accuracy" and "accuracy" in scores else 0.0
    return primary, scores["loss"]


@dataclass
class Candidate:
    """One possible start, scored on the training examples."""

    name: str
    kind: str  # baseline (no prompt) / origin / source / combination
    prompt: torch.Tensor | None
    scores: dict[str, float]
    info: dict[str, Any] = field(default_factory=dict)

    def describe(self, chosen: bool) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, **self.info,
                **{k: _round(v) for k, v in self.scores.items()}, "chosen": chosen}


def score_candidates(backbone: Backbone, task: TaskSpec, examples: Sequence[Example], origin: Origin,
                     sources: Sequence[SourcePrompt], policy: AutoPolicy) -> list[Candidate]:
    """No prompt, the origin, every source prompt and the combinations of the best sources, each
    scored on ``examples`` (at most ``policy.max_examples`` of them)."""
    if not examples:
        raise ConfigError(f"init auto: task '{task.task}' has no training examples to choose with",
                          "give the run training examples (shots ≥ 1)")
    examples = subsample(list(examples), policy.max_examples, seed=0)
    origin_prompt = origin.tensor(backbone)
    odd = sorted({f"{s.task} {list(s.prompt.shape)}" for s in sources if s.prompt.shape != origin_prompt.shape})
    if odd:
        raise ConfigError(f"init auto: library prompts {odd} do not have the run's shape "
                          f"{list(origin_prompt.shape)}", "use the library's prompt length (prompt_length) or a "
                          "library built for this model")

    def scored(name: str, kind: str, prompt: torch.Tensor | None, **info: Any) -> Candidate:
        return Candidate(name, kind, prompt, _candidate_scores(backbone, task, examples, prompt, policy), info)

    candidates = [scored(NO_PROMPT, "baseline", None), scored(ORIGIN, "origin", origin_prompt, seed=origin.seed)]
    singles = [(s, scored(s.task, "source", s.prompt.float(), vector_norm=round(s.vector.norm(), 4)))
               for s in sources]
    candidates += [c for _, c in singles]
    ranked = [s for s, c in sorted(singles, key=lambda pair: _sort_key(pair[1].scores, policy))]
    for size in range(2, min(policy.combine, len(ranked)) + 1):
        members = ranked[:size]
        combined = sum((s.vector for s in members[1:]), members[0].vector)
        candidates.append(scored("tpv:" + "+".join(s.task for s in members), "combination",
                                 combined.apply_to(origin, 1.0, backbone), sources=[s.task for s in members],
                                 vector_norm=round(combined.norm(), 4)))
    return candidates


def pick(candidates: Sequence[Candidate], policy: AutoPolicy) -> tuple[Candidate, bool]:
    """The start to train from and whether that is a fall-back: the best-scoring trainable candidate,
    unless it does not beat both no prompt and the origin — then the origin (plain prompt tuning)."""
    by_name = {c.name: c for c in candidates}
    best = min((c for c in candidates if c.kind != "baseline"), key=lambda c: _sort_key(c.scores, policy))
    fell_back = best.name == ORIGIN or not _better(best.scores, by_name[NO_PROMPT].scores, policy)
    return (by_name[ORIGIN] if fell_back else best), fell_back


def choose_start(backbone: Backbone, task: TaskSpec, examples: Sequence[Example], origin: Origin,
                 sources: Sequence[SourcePrompt], policy: AutoPolicy | None = None) -> AutoChoice:
    """Score the candidates on ``examples`` (the run's own training examples) and return the start with
    the best score — or the origin when none beats both no prompt and the origin (module docstring)."""
    policy = policy or AutoPolicy()
    begun = time.perf_counter()
    candidates = score_candidates(backbone, task, examples, origin, sources, policy)
    chosen, fell_back = pick(candidates, policy)
    ordered = sorted(candidates, key=lambda c: _sort_key(c.scores, policy))
    return AutoChoice(None if fell_back else chosen.prompt, chosen.name, fell_back,
                      [c.describe(c is chosen) for c in ordered], time.perf_counter() - begun)


def _round(value: float) -> float:
    return value if math.isnan(value) else round(value, 6)
