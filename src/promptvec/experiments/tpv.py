"""Task prompt vector experiments (TPV paper; docs/methods.md §2) on trained prompts.

* :func:`cross_origin` — for every task and origin i, apply τ^(i) to every other origin j
  ("mixed init") and compare the scores with the prompts actually trained from the origins.
* :func:`combine_tasks` — add the vectors of several tasks, choose λ on validation (grid
  0 … 1, step 0.05, mean validation score over the combined tasks), report test per task at that λ.

Both only evaluate; the prompts come from earlier training runs (run folders that record their
origin), so they plug into suites and the CLI unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from promptvec.backbones import Backbone
from promptvec.evaluation import evaluate
from promptvec.evaluation.stats import compare, summarize
from promptvec.peft_folder import load_prompt
from promptvec.tasks import TaskData, subsample
from promptvec.training.config import train_default
from promptvec.vectors import TaskPromptVector
from promptvec.vectors.scaling import LAMBDA_GRID, choose_scale


def _score(backbone: Backbone, data: TaskData, prompt, split: str, limit: int | None, seed: int) -> float:
    examples = subsample(data.split(split), limit, seed)
    return evaluate(backbone, data.spec, examples, prompt).metrics[data.spec.primary_metric]


@dataclass
class CrossOriginRow:
    task: str
    original: list[float]  # tuned prompt of each origin
    mixed: list[float]  # origin_j + τ_i for every i != j
    norms: list[float]  # ‖τ_i‖
    origin_norms: list[float]  # ‖θ0_i‖

    def summary(self) -> dict:
        # independent samples (a mixed prompt has no natural partner among the originals): Welch
        c = compare({("mixed", k): v for k, v in enumerate(self.mixed)},
                    {("original", k): v for k, v in enumerate(self.original)})
        return {"task": self.task, "original": summarize(self.original), "mixed": summarize(self.mixed),
                "difference": c.difference, "test": c.test, "p_value": c.p_value,
                "tau_norm": summarize(self.norms).mean, "origin_norm": summarize(self.origin_norms).mean}


def cross_origin(backbone: Backbone, runs: dict[str, dict[int, str | Path]], data: dict[str, TaskData],
                 split: str = "test", limit: int | None = train_default("test_examples"),
                 seed: int = train_default("eval_seed"),
                 originals: dict[str, list[float]] | None = None) -> list[CrossOriginRow]:
    """``runs[task][origin_seed] -> run folder``; every task needs at least two origins.
    ``originals[task]`` may give the tuned prompts' scores already measured on the same examples."""
    rows = []
    for task, by_origin in runs.items():
        if len(by_origin) < 2:
            from promptvec.errors import ConfigError

            raise ConfigError(f"cross-origin transfer of '{task}' needs prompts from at least two origins",
                              "train the task from more origin seeds")
        vectors = {o: TaskPromptVector.from_checkpoint(path, backbone) for o, path in by_origin.items()}
        origins = {o: v.recorded_origin for o, v in vectors.items()}
        original = (originals or {}).get(task) or [
            _score(backbone, data[task], load_prompt(path, backbone).prompt, split, limit, seed)
            for path in by_origin.values()]
        mixed = [_score(backbone, data[task], vectors[i].apply_to(origins[j], 1.0, backbone), split, limit, seed)
                 for i in vectors for j in origins if i != j]
        rows.append(CrossOriginRow(task, original, mixed, [v.norm() for v in vectors.values()],
                                   [float(origins[o].tensor(backbone).norm()) for o in origins]))
    return rows


@dataclass
class CombinationResult:
    tasks: list[str]
    best_lambda: float
    validation_curve: dict[float, float] = field(default_factory=dict)  # λ -> mean validation score
    test: dict[str, float] = field(default_factory=dict)  # task -> test score of the combination
    single: dict[str, float] = field(default_factory=dict)  # task -> test score of its own prompt


def combine_tasks(backbone: Backbone, runs: dict[str, str | Path], data: dict[str, TaskData],
                  grid: tuple[float, ...] = LAMBDA_GRID, val_limit: int | None = train_default("val_examples"),
                  test_limit: int | None = train_default("test_examples"), seed: int = train_default("eval_seed"),
                  single: dict[str, float] | None = None) -> CombinationResult:
    """``runs[task] -> run folder`` (all from one origin): θ = θ0 + λ Σ τ_t, λ chosen on validation.
    ``single[task]`` may give each task's own prompt's test score already measured on the same examples."""
    vectors = {t: TaskPromptVector.from_checkpoint(path, backbone) for t, path in runs.items()}
    first = next(iter(vectors.values()))
    origin = first.recorded_origin
    if any(v.meta.origin != first.meta.origin for v in vectors.values()):
        from promptvec.errors import ConfigError

        raise ConfigError("combined vectors must come from the same origin", "use runs trained from one origin seed")
    total = sum(list(vectors.values())[1:], first)

    def validation(lam: float) -> float:
        prompt = total.apply_to(origin, lam, backbone)
        return sum(_score(backbone, data[t], prompt, "validation", val_limit, seed) for t in vectors) / len(vectors)

    best, curve = choose_scale(validation, grid)
    prompt = total.apply_to(origin, best, backbone)
    return CombinationResult(
        tasks=list(vectors), best_lambda=best, validation_curve=curve,
        test={t: _score(backbone, data[t], prompt, "test", test_limit, seed) for t in vectors},
        single=single or {t: _score(backbone, data[t], load_prompt(runs[t], backbone).prompt, "test", test_limit,
                                    seed) for t in vectors})
