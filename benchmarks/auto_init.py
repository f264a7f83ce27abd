"""What ``init: auto`` costs to choose a start, against the passes it cannot avoid.

Choosing scores every candidate (no prompt, the origin, each library prompt, the combinations of the
best) on the run's training examples: by rank-classification accuracy, ties broken by the training
loss. Each candidate needs one rank-classification pass over those examples — the *floor* timed here
as exactly that. Until 2026-12-04 the loss came from a second, training-style pass per candidate; that
*two-pass* scoring is timed here too, as the reference the change is measured against. Both
references score the very candidates ``choose_start`` scored (its record names them). Run round-robin
on the embedded SmolLM2 with the library that ships with it, the target's own prompt left out.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from benchmarks.common import Section, interleaved, spread
from promptvec.backbones import Backbone, load_backbone
from promptvec.evaluation import evaluate
from promptvec.library import AutoPolicy, PromptLibrary, SourcePrompt, choose_start
from promptvec.library.auto import NO_PROMPT, ORIGIN
from promptvec.tasks import TaskSpec, few_shot, get_task, load_task_data
from promptvec.vectors import Origin

TASKS = ("sst2", "trec")  # one-token and multi-token labels
SHOTS = 16  # the library study's target budget
#: choosing may cost at most this much more than one rank pass per candidate
FLOOR_LIMIT = 1.15
#: and must cost at most this share of the two-pass scoring it replaced
TWO_PASS_LIMIT = 0.7
FLOOR, TWO_PASS = "floor: one rank pass per candidate", "two passes per candidate (before)"


def _candidate_prompts(backbone: Backbone, record: dict, origin: Origin,
                       sources: list[SourcePrompt]) -> list[torch.Tensor | None]:
    """The prompts behind ``choose_start``'s recorded candidates, rebuilt independently of its code."""
    by_task = {source.task: source for source in sources}
    prompts: list[torch.Tensor | None] = []
    for candidate in record["candidates"]:
        if candidate["name"] == NO_PROMPT:
            prompts.append(None)
        elif candidate["name"] == ORIGIN:
            prompts.append(origin.tensor(backbone))
        elif candidate["kind"] == "source":
            prompts.append(by_task[candidate["name"]].prompt)
        else:
            members = [by_task[name].vector for name in candidate["sources"]]
            prompts.append(sum(members[1:], members[0]).apply_to(origin, 1.0, backbone))
    return prompts


def _loss_pass(backbone: Backbone, task: TaskSpec, examples: list, prompt: torch.Tensor | None) -> None:
    """The training loss of ``examples`` under a fixed prompt: the second pass two-pass scoring made."""
    rows = 0 if prompt is None else prompt.shape[0]
    batch = backbone.collate(task, backbone.encode(task, examples, rows), train=True).to(backbone.device)
    fixed = torch.zeros(0, backbone.dim) if prompt is None else backbone.prepare_prompt(prompt)
    with torch.no_grad():
        backbone.loss(task, batch, fixed)


def _paths(backbone: Backbone, task: TaskSpec, examples: list, origin: Origin, sources: list[SourcePrompt],
           prompts: list[torch.Tensor | None]) -> dict[str, Callable[[], None]]:
    """The three ways of scoring the candidates that are timed against each other."""
    def choose() -> None:
        choose_start(backbone, task, examples, origin, sources)

    def floor() -> None:
        for prompt in prompts:
            evaluate(backbone, task, examples, prompt)

    def two_pass() -> None:
        for prompt in prompts:
            _loss_pass(backbone, task, examples, prompt)
            evaluate(backbone, task, examples, prompt)

    return {"choose_start": choose, FLOOR: floor, TWO_PASS: two_pass}


def run(quick: bool = False) -> Section:
    backbone = load_backbone("default", max_length=128)
    library = PromptLibrary.for_backbone(backbone)
    repeats = 1 if quick else 3
    rows, targets, data = [], [], {}
    for name in TASKS:
        task = get_task(name)
        examples = few_shot(task, load_task_data(task).train, SHOTS, 0)
        origin = Origin.sample(backbone, library.sources(backbone)[0].prompt.shape[0], 0)
        sources = library.sources(backbone, exclude={name})
        record = choose_start(backbone, task, examples, origin, sources).record(AutoPolicy())
        prompts = _candidate_prompts(backbone, record, origin, sources)

        # the first choice (above) was the untimed warm-up of every path: the model's one-time checks
        times = interleaved(_paths(backbone, task, examples, origin, sources, prompts), repeats, warmup=0)
        # fastest passes: the three do fixed work, and this machine's noise only adds to it
        chosen = min(times["choose_start"])
        to_floor, to_two = chosen / min(times[FLOOR]), chosen / min(times[TWO_PASS])
        data[name] = {"candidates": len(prompts), "times": times, "choose / floor": to_floor,
                      "choose / two passes": to_two}
        for label, measured in times.items():
            rows.append([name, str(len(prompts)), label, spread(measured), f"{min(measured) / chosen:.2f}"])
        targets += [(f"{name}: choosing ≤ {FLOOR_LIMIT}× one rank pass per candidate", to_floor <= FLOOR_LIMIT,
                     f"{to_floor:.2f}×"),
                    (f"{name}: choosing ≤ {TWO_PASS_LIMIT}× the two-pass scoring it replaced", to_two <= TWO_PASS_LIMIT,
                     f"{to_two:.2f}×")]
    return Section(
        title="`init: auto`: the cost of choosing a start (embedded SmolLM2-135M, fp32, shipped library)",
        intro=(f"{SHOTS} training examples (seed 0) per target; the candidates are those `choose_start` scores with "
               "the shipped library less the target's own prompt (no prompt, the origin, 21 library prompts, 2 "
               f"combinations). Round-robin, {repeats} timed rounds after one untimed choice, torch threads "
               f"{torch.get_num_threads()}: median [min–max] seconds. "
               "*floor*: one rank-classification pass per candidate over the same examples (what choosing cannot "
               "avoid); *two passes*: a training-loss pass and a rank pass per candidate (the scoring before "
               "2026-12-04). Ratios compare fastest passes (fixed work: noise only adds)."),
        header=["target", "candidates", "what", "seconds", "fastest, relative to choose_start"],
        rows=rows, targets=targets, data=data)
