"""DTVG (docs/methods.md §5): groupings known by hand (kc and its ablations), the mixing module on a
tiny backbone, and Stage I as the trained, validation-selected target prompt."""

from __future__ import annotations

import json

import pytest
import torch

from promptvec.errors import ConfigError
from promptvec.experiments.runner import run_suite
from promptvec.methods.dtvg import GROUPINGS, DTVGPrompt
from promptvec.suites.plan import expand, run_dir
from promptvec.suites.schema import load_suite
from tests.conftest import PS, random_batch, tiny_transfer_suite

T = torch.tensor


def group(name: str, target, sources, lam: float = 1.0) -> list[int]:
    return GROUPINGS[name](T(target, dtype=torch.float32), T(sources, dtype=torch.float32), lam).int().tolist()


# ---- DTVG grouping, by hand ------------------------------------------------------------------------
# target mean (1, 0, 0, 0); sim(a, b) = a·b / 4
#   A (2, 0): TS .5    B (1, 1): TS .25    C (.5, -3): TS .125    D (-1, 0): TS −.25 (never joins)
#   pairs: A·B .5, A·C .25, B·C −.625  →  KC(1) 0, KC(2) .5, KC(3) (.5 + .25 − .625)/3 ≈ .042
TARGET = [1.0, 0, 0, 0]


SOURCES = [[2.0, 0, 0, 0], [1.0, 1, 0, 0], [0.5, -3, 0, 0], [-1.0, 0, 0, 0]]


def test_kc_takes_the_most_consistent_prefix_of_positive_sources():
    assert group("kc", TARGET, SOURCES) == [1, 1, 0, 0]
    # the ranking is by TS, not by list order
    assert group("kc", TARGET, [SOURCES[2], SOURCES[3], SOURCES[1], SOURCES[0]]) == [0, 0, 1, 1]


def test_kc_with_disagreeing_sources_keeps_only_the_closest():
    # A·E < 0: KC(2) < KC(1) = 0, so the group is the top-ranked source alone
    assert group("kc", TARGET, [[2.0, 1, 0, 0], [1.0, -5, 0, 0]]) == [1, 0]


def test_no_positive_source_gives_an_empty_group():
    assert group("kc", TARGET, [[-1.0, 0, 0, 0], [-0.5, 2, 0, 0]]) == [0, 0]
    assert group("all-positive", TARGET, [[-1.0, 0, 0, 0], [-0.5, 2, 0, 0]]) == [0, 0]
    assert group("ts-plus-kc", TARGET, [[-1.0, 0, 0, 0]]) == [0]


def test_single_source():
    assert group("kc", TARGET, [[3.0, 1, 0, 0]]) == [1]
    assert group("kc", TARGET, [[-3.0, 1, 0, 0]]) == [0]


def test_identical_sources_tie_and_the_first_maximum_wins():
    # KC(2) = KC(3) = KC(4) = sim(s, s) > 0: the shortest such prefix (k = 2), in list order on TS ties
    assert group("kc", TARGET, [[1.0, 0, 0, 0]] * 4) == [1, 1, 0, 0]


def test_ties_in_consistency_choose_the_shorter_group():
    # three sources with equal TS and equal pairwise similarity: KC(2) = KC(3) → k* = 2
    s = [[1.0, 1, 0, 0], [1.0, 0, 1, 0], [1.0, 0, 0, 1]]
    assert group("kc", TARGET, s) == [1, 1, 0]


def test_ablation_groupings():
    assert group("all-positive", TARGET, SOURCES) == [1, 1, 1, 0]
    assert group("all", TARGET, SOURCES) == [1, 1, 1, 1]
    assert group("target-only", TARGET, SOURCES) == [0, 0, 0, 0]
    # mean TS + λ·KC: λ = 0 keeps the best single source; a large λ follows KC
    assert group("ts-plus-kc", TARGET, SOURCES, lam=0.0) == [1, 0, 0, 0]
    assert group("ts-plus-kc", TARGET, SOURCES, lam=100.0) == [1, 1, 0, 0]
    # λ = 1: k=1 → .5; k=2 → .375 + .5; k=3 → .29 + .04 — the pair wins
    assert group("ts-plus-kc", TARGET, SOURCES, lam=1.0) == [1, 1, 0, 0]


def _dtvg(grouping="kc", rows=2):
    """Row means equal to TARGET / SOURCES (every row identical), origin zero."""
    target = T(TARGET).repeat(rows, 1)
    sources = torch.stack([T(s).repeat(rows, 1) for s in SOURCES])
    return DTVGPrompt(torch.zeros(rows, 4), target, sources, ["A", "B", "C", "D"], grouping)


def test_dtvg_prompt_mixes_the_group_and_logs_every_training_forward():
    module = _dtvg()
    batch = random_batch(3)
    prompt = module(batch)
    assert module.shares_prompt and prompt.shape == (2, 4)  # one prompt for the whole batch
    expected = T(TARGET) + T(SOURCES[0]) + T(SOURCES[1])  # P_init (0) + T_t + T_A + T_B, scales 1
    assert torch.allclose(prompt[0], expected)
    module.step = 7
    module(batch)
    log = module.drain_log()
    assert [e["step"] for e in log] == [0, 7] and log[1]["group"] == [1.0, 1.0, 0.0, 0.0]
    assert module.drain_log() == []
    module.eval()
    module(batch)
    assert module.drain_log() == []  # evaluation is not logged


def test_dtvg_group_follows_the_vectors_except_when_fixed_at_start():
    # turned towards −e2: TS = A 0, B −.25, C .75, D 0 → ranked C, A, D; KC(2) = C·A/4 > 0 > KC(3)
    for grouping, after in (("kc", [1, 0, 1, 0]), ("fixed-at-start", [1, 1, 0, 0])):
        module = _dtvg(grouping)
        module(random_batch(1))  # first training step
        with torch.no_grad():
            module.target_vector.copy_(T([0.0, -1, 0, 0]).repeat(2, 1))
        module(random_batch(1))
        assert module.drain_log()[-1]["group"] == after, grouping


def test_dtvg_refuses_bad_vectors():
    with pytest.raises(ConfigError, match="disagree in shape"):
        DTVGPrompt(torch.zeros(2, 4), torch.zeros(3, 4), torch.zeros(1, 2, 4), ["a"])
    with pytest.raises(ConfigError, match="at least one source"):
        DTVGPrompt(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(0, 2, 4), [])
    with pytest.raises(ConfigError, match="unknown DTVG grouping"):
        DTVGPrompt(torch.zeros(2, 4), torch.zeros(2, 4), torch.zeros(1, 2, 4), ["a"], "best")


@pytest.mark.slow
def test_dtvg_stage1_is_the_trained_validation_selected_target_prompt(tmp_path, tiny_models, toy_tasks):
    """By default Stage I trains the target with the method's own budget and keeps its best validation
    checkpoint among trained steps (the authors' code) — reused from the suite's pt run when that run
    trained exactly the same; ``stage1_steps`` is the explicit cheaper option."""
    from promptvec.suites.method import METHODS

    ps = PS
    methods = [{"name": "pt", "settings": {**ps, "select_initial": False}},
               {"name": "dtvg", "settings": ps},
               {"name": "dtvg", "label": "dtvg own lr", "settings": {**ps, "lr": 0.07}},
               {"name": "dtvg", "label": "dtvg short", "settings": {**ps, "stage1_steps": 2}}]
    suite = load_suite(tiny_transfer_suite(tmp_path, tiny_models, toy_tasks, "stage1-tiny", methods, steps=4,
                                           eval_every=2))
    dtvg = METHODS["dtvg"]
    runs = {r.label: r for r in expand(suite)}
    assert dtvg.estimate_steps(suite, runs["dtvg"]) == 8  # Stage I trained to the end, then DTVG
    assert dtvg.estimate_steps(suite, runs["dtvg short"]) == 6
    out = tmp_path / "out"
    run_suite(suite, out, progress=False, log=lambda m: None)
    record = lambda label: json.loads((run_dir(out, runs[label]) / "run.json").read_text())  # noqa: E731

    pt = record("pt")
    reused = record("dtvg")["init"]["stage1"]
    assert reused["reused_from"] == f"runs/{runs['pt'].run_id}"
    assert not (run_dir(out, runs["dtvg"]) / "stages").exists()  # nothing trained twice
    assert (reused["best_step"], reused["validation"]) == (pt["best"]["step"], pt["best"]["validation"])

    own = record("dtvg own lr")["init"]["stage1"]  # another lr: not the pt run, so trained here
    stage = json.loads((run_dir(out, runs["dtvg own lr"]) / "stages" / "stage1" / "run.json").read_text())
    assert own["reused_from"] is None and own["steps"] == 4 and own["selected"] == "validation"
    assert [h["step"] for h in stage["history"]] == [0, 2, 4] and stage["config"]["lr"] == 0.07
    trained = [h for h in stage["history"] if h["step"] > 0]
    assert own["best_step"] == max(trained, key=lambda h: h["validation"]["acc"])["step"]  # never step 0
    assert own["wall_time_s"] > 0

    short = record("dtvg short")["init"]["stage1"]
    assert (short["steps"], short["best_step"], short["selected"]) == (2, 2, "last step")
