"""The dry-run's cost model: how long a suite's runs will take, from the plan alone (nothing loaded).

A run's time is modelled as the work it does in three kinds of token, each at its own measured price,
plus a fixed cost per run:

* **training**: every example-step's tokens (input and, for a free-text task, its answer; a step's batch
  as the method's batch order fills it on average, so 10 examples at batch 8 make steps of 5), plus the
  prompt's rows once per step when the prompt is shared by the batch (its keys/values are computed
  once) or on every example when each input gets its own prompt (ATTEMPT, Fusion);
* **rank evaluation**: the tokens of every scored example (validation during training, then test, and the
  candidates a method scores to choose its start: ``auto``), a split smaller than the budget counted whole;
* **decoding**: ``max_gen_toks`` greedy steps per evaluated example of a free-text task (an upper
  bound: a prompt that learned to stop ends sooner, a bare model rarely does).

Training that another planned run does identically is not counted: each method declares its trainings
(:class:`~promptvec.suites.method.PlannedTraining`), and one whose start (or every start it may choose)
is trained by another run of the same cell with the same settings is copied at run time. A source run
that the suite's ``sources.library`` already holds is copied from it, so it costs nothing either. Token
counts come from each task's local data (characters / 4, no tokenizer). Prices are per token of
SmolLM2-135M on the calibration machine, scaled for other models by their compute per token
(:func:`compute_parameters`: the weights a token's pass multiplies by, not the embedding tables);
``benchmarks/cost_model.py`` fits them to the committed studies' measured times (phase by phase where a
run recorded its phases: :meth:`CostModel.phase_work`) and states the error per method.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from promptvec.errors import PromptvecError
from promptvec.experiments import source_library
from promptvec.suites.method import METHODS, PlannedTraining
from promptvec.suites.plan import RunSpec, expand, is_source
from promptvec.suites.schema import SuiteSpec

CHARS_PER_TOKEN = 4.0  # English text in a BPE vocabulary: the estimate needs no tokenizer (nothing is loaded)
#: what an example of unknown length (no local data) counts as: the quickstart's sst2 inputs
DEFAULT_INPUT_TOKENS = 34.0
#: what a split of unknown size (no local data) counts as where a budget scores all of it
UNKNOWN_SPLIT = {"validation": 500, "test": 2000}
#: the groups :meth:`CostModel.phase_work` splits a run's work into, each with the phases of a run record
#: (:mod:`promptvec.training.phases`) whose time it is
WORK_PHASES = {"start": ("start",), "steps": ("steps",), "evaluation": ("validation", "test"),
               "other": ("load", "setup", "saving")}


@dataclass(frozen=True)
class Calibration:
    """Seconds per unit of work for a model of :data:`REFERENCE_COMPUTE` compute parameters, fitted by
    ``benchmarks/cost_model.py`` to the committed studies (SmolLM2-135M, fp32, this project's 2-core
    CPU, one or two runs side by side)."""

    per_run_s: float
    train_token_s: float
    rank_token_s: float
    decode_token_s: float


#: fitted 2026-12-05 on the six committed studies, the library study complete, each split counted at its size, a
#: run that recorded its phases matched phase by phase, a model scaled by its compute per token, a step's batch as
#: its order fills it (BENCHMARKS.md, "Cost model"); the studies ran the code of their day, before training packed
#: its batches, so a study run with today's code may take less
CALIBRATION = Calibration(per_run_s=3.34, train_token_s=9.65e-3, rank_token_s=2.52e-3, decode_token_s=1.55e-2)


@dataclass(frozen=True)
class TaskTokens:
    """One example of a task, in tokens: its input, its answer (free text: trained on), and the greedy
    steps its evaluation decodes (0 for a label task, scored by rank classification); and the sizes of its
    training, validation and test splits, which cap what a run's shots and a budget's
    ``val_examples``/``test_examples`` take (None: no local data to count)."""

    input: float
    answer: float = 0.0
    decoded: float = 0.0
    train: int | None = None
    validation: int | None = None
    test: int | None = None

    def trained(self, shots: int | None) -> int | None:
        """The training examples a run of ``shots`` draws its batches from (None = all; unknown without
        local data)."""
        if self.train is None:
            return None
        return self.train if shots is None else min(shots, self.train)

    def scored(self, limit: int | None) -> int:
        """Test examples a budget of ``limit`` scores: a smaller split is scored whole, as is any split when
        the budget sets no limit."""
        return _taken(limit, self.test, UNKNOWN_SPLIT["test"])

    def validated(self, limit: int | None) -> int:
        """Validation examples a budget of ``limit`` scores at each evaluation."""
        return _taken(limit, self.validation, UNKNOWN_SPLIT["validation"])


def _taken(limit: int | None, size: int | None, unknown: int) -> int:
    if size is None:
        return limit or unknown
    return size if limit is None else min(limit, size)


@dataclass(frozen=True)
class RunWork:
    """What a run does, in the three kinds of token the model prices (and whether it runs at all)."""

    runs: float = 0.0
    train_tokens: float = 0.0
    rank_tokens: float = 0.0
    decode_tokens: float = 0.0

    def __add__(self, other: RunWork) -> RunWork:
        return RunWork(*(getattr(self, f.name) + getattr(other, f.name) for f in fields(RunWork)))

    def features(self, scale: float) -> list[float]:
        """The work as the row of a least-squares fit of :class:`Calibration` (its fields' order), for a
        model ``scale`` times the reference's size (tokens cost in proportion, a run's fixed cost does not)."""
        return [self.runs, *(scale * getattr(self, f.name) for f in fields(RunWork)[1:])]

    def seconds(self, calibration: Calibration, scale: float) -> float:
        prices = [getattr(calibration, f.name) for f in fields(Calibration)]
        return sum(price * amount for price, amount in zip(prices, self.features(scale), strict=True))


def compute_parameters(config: dict[str, Any]) -> float:
    """The parameters a token's forward pass multiplies by, from a transformers config: every layer's
    attention and feed-forward weights (a gated MLP's three matrices, grouped-query keys/values at their
    size, a seq2seq decoder's cross-attention), not the embedding tables. An input embedding is a lookup,
    and a causal LM projects onto its vocabulary only where logits are read; the compute per token scales
    with this count, not with the stored one (Kaplan et al., 2020, count non-embedding parameters for
    that reason): all-MiniLM-L6-v2 stores 0.17× SmolLM2-135M's parameters and cost 0.11× per training
    token and 0.13× per ranked token in the calibration runs (quickstart and tpv-fewshot, docs/results/calibration),
    against 0.10× by this count."""
    d = config.get("hidden_size") or config.get("d_model") or config.get("n_embd") or 0
    layers = config.get("num_hidden_layers") or config.get("num_layers") or config.get("n_layer") or 0
    decoder_layers = (config.get("num_decoder_layers") or layers) if config.get("is_encoder_decoder") else 0
    heads = config.get("num_attention_heads") or config.get("num_heads") or config.get("n_head") or 1
    head_dim = config.get("head_dim") or config.get("d_kv") or d // heads
    kv_heads = config.get("num_key_value_heads") or heads
    feed_forward = config.get("intermediate_size") or config.get("d_ff") or config.get("n_inner") or 4 * d
    gated = (config.get("hidden_act") in ("silu", "swish") or "hidden_activation" in config
             or str(config.get("feed_forward_proj", "")).startswith("gated"))
    attention = 2 * d * heads * head_dim + 2 * d * kv_heads * head_dim
    mlp = (3 if gated else 2) * d * feed_forward
    return float(layers * (attention + mlp) + decoder_layers * (2 * attention + mlp))


#: the shapes of the models promptvec names (embedded or common), for their compute without a download
_NAMED_SHAPES: dict[str, dict[str, Any]] = {
    "default": {"hidden_size": 576, "num_hidden_layers": 30, "intermediate_size": 1536, "num_attention_heads": 9,
                "num_key_value_heads": 3, "hidden_act": "silu"},  # SmolLM2-135M
    "minilm": {"hidden_size": 384, "num_hidden_layers": 6, "intermediate_size": 1536, "num_attention_heads": 12},
    "t5-small": {"d_model": 512, "num_layers": 6, "d_ff": 2048, "num_heads": 8, "d_kv": 64, "is_encoder_decoder": True},
    "t5-base": {"d_model": 768, "num_layers": 12, "d_ff": 3072, "num_heads": 12, "d_kv": 64,
                "is_encoder_decoder": True},
    "t5-large": {"d_model": 1024, "num_layers": 24, "d_ff": 4096, "num_heads": 16, "d_kv": 64,
                 "is_encoder_decoder": True},
    "gpt2": {"n_embd": 768, "n_layer": 12, "n_head": 12},
    "bert-base": {"hidden_size": 768, "num_hidden_layers": 12, "intermediate_size": 3072, "num_attention_heads": 12},
}


#: the compute parameters of the model the prices are for (SmolLM2-135M: 106 M of its 135 M)
REFERENCE_COMPUTE = compute_parameters(_NAMED_SHAPES["default"])


def model_compute(model: str) -> float | None:
    """The model's :func:`compute_parameters`, without loading (or downloading) it: from the shapes of a model
    promptvec names, a local ``config.json``, or else a size in the model's name (``*-1.7B``: its stored count,
    which overstates a small model's compute by its embedding tables)."""
    name = model.lower().rsplit("/", 1)[-1]
    config_path = Path(model) / "config.json"
    if model not in _NAMED_SHAPES and config_path.is_file():
        return compute_parameters(json.loads(config_path.read_text())) or None
    for key, shape in _NAMED_SHAPES.items():
        if name == key or name.startswith(key + "-") or name.endswith(key):
            return compute_parameters(shape)
    match = re.search(r"(\d+(?:\.\d+)?)\s*([bm])\b", name)
    if match:
        return float(match.group(1)) * (1e9 if match.group(2) == "b" else 1e6)
    return None


def task_tokens(task: str, max_length: int, data_dir: str | None) -> TaskTokens:
    """An example of ``task`` in tokens (≈ the characters of up to 200 rendered training inputs / 4, each
    cut at ``max_length``; a free-text task's answers likewise, at most ``max_gen_toks``, plus EOS), and its
    split sizes. Only data on this machine is read; a task whose data is not here counts as
    :data:`DEFAULT_INPUT_TOKENS`, its splits as large as any budget."""
    from promptvec.tasks import get_task, load_task_data
    from promptvec.tasks.loading import resolve_data_dir

    unknown = TaskTokens(DEFAULT_INPUT_TOKENS)
    try:
        spec = get_task(task)
        folder = resolve_data_dir(data_dir)
        if not spec.data_files and not (folder is not None and (folder / spec.task).is_dir()):
            return unknown
        data = load_task_data(spec, folder)
    except PromptvecError:
        return unknown
    sample = data.train[:200]
    if not sample:
        return unknown
    # each input cut at max_length on its own: a mean of long and short inputs is not cut the way they are
    tokens = sum(min(float(max_length), len(spec.render(example.fields)) / CHARS_PER_TOKEN)
                 for example in sample) / len(sample)
    splits = {"train": len(data.train), "validation": len(data.validation), "test": len(data.test)}
    if not spec.generates:
        return TaskTokens(tokens, **splits)
    limit = spec.generation_kwargs.max_gen_toks
    answer = min(limit, sum(len(str(example.label)) for example in sample) / len(sample) / CHARS_PER_TOKEN) + 1
    return TaskTokens(tokens, answer, float(limit), **splits)


class CostModel:
    """Seconds each run of one suite needs on the calibration machine. Each task's token counts are read
    once; which planned trainings other runs already do is worked out once for the whole plan."""

    def __init__(self, suite: SuiteSpec, data_dir: str | None = None,
                 calibration: Calibration = CALIBRATION) -> None:
        self.suite = suite
        self.data_dir = data_dir or suite.data_dir
        self.calibration = calibration
        compute = model_compute(suite.backbone.model)
        self.scale = None if compute is None else compute / REFERENCE_COMPUTE
        self._tokens: dict[str, TaskTokens] = {}
        self._plan = planned_copies(suite, expand(suite))
        self.library = Path(suite.sources.library) if suite.sources.library else None

    def tokens(self, task: str) -> TaskTokens:
        if task not in self._tokens:
            self._tokens[task] = task_tokens(task, self.suite.backbone.max_length, self.data_dir)
        return self._tokens[task]

    def trainings(self, run: RunSpec) -> list[tuple[PlannedTraining, bool]]:
        """The run's planned trainings, each with whether another planned run does it (a copy)."""
        if run.run_id not in self._plan:  # a run from outside the suite's plan: nothing of it is a copy
            return [(training, False) for training in METHODS[run.method].planned_trainings(self.suite, run)]
        return self._plan[run.run_id]

    def copied(self, run: RunSpec) -> list[bool]:
        """For each of the run's planned trainings, whether it is a copy."""
        return [is_copy for _, is_copy in self.trainings(run)]

    def from_library(self, run: RunSpec) -> bool:
        """Whether ``run`` is a source the suite's ``sources.library`` holds: copied from it, not trained."""
        return self.library is not None and is_source(run) and source_library.holds(self.library, self.suite, run)

    def work(self, run: RunSpec, done_steps: int = 0) -> RunWork:
        """The work left in ``run`` after ``done_steps`` of its training steps (all stages in order)."""
        return sum(self.phase_work(run, done_steps).values(), RunWork())

    def phase_work(self, run: RunSpec, done_steps: int = 0) -> dict[str, RunWork]:
        """The work left in ``run``, split as its record's phases split its time
        (:mod:`promptvec.training.phases`), so that each price can be fitted to the phase that pays it:

        * ``start``: making the start prompt — the candidates an ``auto`` run scores, and every stage
          trained before the run's own training (with its validations), such as DTVG's Stage I;
        * ``steps``: the run's own training steps;
        * ``evaluation``: its validations and its test (``validation`` + ``test``);
        * ``other``: the run's fixed cost (``load``, ``setup``, ``saving``).
        """
        if self.from_library(run):
            return {}
        method = METHODS[run.method]
        options = run.options(BaseModel)
        rows = method.prompt_rows(options)
        shared = method.prompt_module.shares_prompt
        tokens = [self.tokens(task) for task in run.tasks]
        per_example = sum(t.input + t.answer for t in tokens) / len(tokens) + (0 if shared else rows)
        per_step_prompt = rows if shared else 0
        scored = sum(t.input for t in tokens) / len(tokens) + (0 if shared else rows)
        # decoding runs to the limit until a prompt has learned to answer and stop (EOS after the answer)
        untrained_decode = sum(t.decoded for t in tokens) / len(tokens)
        trained_decode = sum(min(t.decoded, t.answer) for t in tokens) / len(tokens)
        b = self.suite.budget
        sizes = [size for t in tokens if (size := t.trained(run.shots)) is not None]

        def filled(batch_size: int) -> float:
            """A step's batch: partial at the end of an epoch's windows (few shots: often), full without data."""
            return method.prompt_module.mean_batch(sizes, batch_size) if len(sizes) == len(tokens) else batch_size

        val = sum(t.validated(b.val_examples) for t in tokens) / len(tokens)
        test = sum(t.scored(b.test_examples) for t in tokens)
        trainings = self.trainings(run)

        def evaluated(untrained: float, trained: float) -> RunWork:
            """Scoring ``untrained`` examples with a prompt not yet trained and ``trained`` with one that is."""
            return RunWork(rank_tokens=(untrained + trained) * scored,
                           decode_tokens=untrained * untrained_decode + trained * trained_decode)

        phases = dict.fromkeys(WORK_PHASES, RunWork()) | {"other": RunWork(runs=1.0)}
        skip = done_steps
        if not done_steps:  # choosing a start by scoring candidates (auto), before any training
            phases["start"] += RunWork(rank_tokens=method.planned_scoring(self.suite, run) * per_example)
        for training, is_copy in trainings:
            left = max(0, training.steps - skip)
            skip = max(0, skip - training.steps)
            if is_copy or not left:
                continue
            examples = left * filled(training.batch_size) * b.grad_accum
            # a stage before the run's own training is part of making its start, its validations too
            phases["steps" if training.final else "start"] += RunWork(
                train_tokens=examples * per_example + left * per_step_prompt)
            # validations every eval_every steps, and the start's once when the training begins
            phases["evaluation" if training.final else "start"] += evaluated(
                val if left == training.steps else 0.0, math.ceil(left / b.eval_every) * val)
        if not trainings:
            phases["evaluation"] += evaluated(test, 0.0)
        elif not any(training.final and is_copy for training, is_copy in trainings):
            phases["evaluation"] += evaluated(0.0, test)  # (a copied final training brings its test results along)
        return phases

    def run_seconds(self, run: RunSpec, done_steps: int = 0) -> float:
        """What the rest of one run costs (0 when the model's size is unknown: see :attr:`scale`)."""
        return sum(self.phase_seconds(run, done_steps).values())

    def phase_seconds(self, run: RunSpec, done_steps: int = 0) -> dict[str, float]:
        """What the rest of one run costs, per group of :data:`WORK_PHASES` (none when the model's size is
        unknown)."""
        if self.scale is None:
            return {}
        work = self.phase_work(run, done_steps)
        return {group: amount.seconds(self.calibration, self.scale) for group, amount in work.items()}

    def evaluation_seconds(self, examples: int) -> float:
        """``examples`` scored by rank classification at the unknown-length default (an analysis)."""
        return (self.scale or 0.0) * self.calibration.rank_token_s * examples * DEFAULT_INPUT_TOKENS


def planned_copies(suite: SuiteSpec, plan: list[RunSpec]) -> dict[str, list[tuple[PlannedTraining, bool]]]:
    """Per run, its planned trainings and which of them another planned run does identically: one whose every
    possible start is trained, in the same cell (task, shots, origin, seed) with the same settings, by a
    training with that single start. Of two identical single-start trainings the first in the plan is
    done, the second copied (what the run-time reuse does, whichever runs first)."""
    planned = {run.run_id: METHODS[run.method].planned_trainings(suite, run) for run in plan}

    def key(run: RunSpec, training: PlannedTraining, start: str) -> tuple[Any, ...]:
        return run.task, run.shots, run.origin, run.seed, training.settings, start

    trained: dict[tuple[Any, ...], str] = {}  # a single-start training -> the first run that does it
    for run in plan:
        for training in planned[run.run_id]:
            if len(training.starts) == 1:
                trained.setdefault(key(run, training, next(iter(training.starts))), run.run_id)
    copied: dict[str, list[tuple[PlannedTraining, bool]]] = {}
    for run in plan:
        flags = []
        for training in planned[run.run_id]:
            doers = {trained.get(key(run, training, start)) for start in training.starts}
            flags.append((training, bool(training.starts) and None not in doers and doers != {run.run_id}))
        copied[run.run_id] = flags
    return copied
