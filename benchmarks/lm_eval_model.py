"""lm-evaluation-harness on a soft prompt: promptvec's ``promptvec`` model against lm-eval's ``hf``
model with ``peft=`` the same prompt folder — the committed sst2 source prompt of the transfer study
on the embedded SmolLM2 — on the same requests (64 sst2 test rows).

Log-likelihood: both must agree; the time is the point (promptvec shares the prompt's keys/values and
takes logits only at the continuation's positions). Generation (``generate_until``, greedy, stop at a
newline): PEFT on transformers 5.x re-inserts the prompt at each decoding step, so its text is wrong;
the accuracy of each against the gold label word shows it, next to promptvec's own evaluator in
generate mode on the same rows.
"""

from __future__ import annotations

import time
from pathlib import Path

from benchmarks.common import Section, interleaved, median, spread

LIBRARY = Path(__file__).parent.parent / "docs" / "results" / "transfer" / "source-library" / "sst2"
EXAMPLES = 64
AGREEMENT = 1e-4


def _requests(kind: str, args: list[tuple]):
    from lm_eval.api.instance import Instance

    return [Instance(request_type=kind, doc={}, arguments=a, idx=i) for i, a in enumerate(args)]


def run(quick: bool = False) -> Section:
    from lm_eval.models.huggingface import HFLM

    from promptvec.backbones.loading import embedded_default_path
    from promptvec.evaluation import evaluate
    from promptvec.lm_eval_model import PromptvecLM
    from promptvec.peft_folder import load_prompt
    from promptvec.tasks import get_task, load_task_data, subsample

    [run_folder] = sorted(LIBRARY.glob("*/run"))
    prompt_folder = run_folder / "prompt"
    task = get_task("sst2")
    examples = subsample(load_task_data(task).test, 16 if quick else EXAMPLES, 1234)
    contexts = [task.render(e.fields, e.source) for e in examples]
    golds = [task.verbalizations[task.label_names.index(str(e.label))] for e in examples]
    pairs = [(c, task.target_delimiter + v) for c in contexts for v in task.verbalizations]
    generation = [(c, {"until": ["\n"], "max_gen_toks": 5, "do_sample": False}) for c in contexts]

    ours = PromptvecLM(model="default", prompt=str(prompt_folder), batch_size=16)
    reference = HFLM(pretrained=str(embedded_default_path()), peft=str(prompt_folder), batch_size=16, device="cpu",
                     dtype="float32")
    scored: dict[str, list] = {}

    def loglikelihood(name, lm):
        return lambda: scored.__setitem__(name, lm.loglikelihood(_requests("loglikelihood", pairs),
                                                                 disable_tqdm=True))

    times = interleaved({"promptvec": loglikelihood("promptvec", ours),
                         "hf + peft": loglikelihood("hf + peft", reference)}, 2 if quick else 3)
    difference = max(abs(a[0] - b[0]) for a, b in zip(scored["promptvec"], scored["hf + peft"], strict=True))
    ratio = median(times["promptvec"]) / median(times["hf + peft"])

    texts, seconds = {}, {}
    for name, lm in (("promptvec", ours), ("hf + peft", reference)):
        start = time.perf_counter()
        texts[name] = lm.generate_until(_requests("generate_until", generation), disable_tqdm=True)
        seconds[name] = time.perf_counter() - start
    accuracy = {name: sum(t.strip() == g for t, g in zip(out, golds, strict=True)) / len(golds)
                for name, out in texts.items()}
    own = evaluate(ours.backbone, task, examples, load_prompt(prompt_folder).prompt, mode="generate").metrics
    rows = [["log-likelihood (2 per row)", name, spread(times[name]), "–"] for name in times]
    rows += [["generate_until", name, f"{seconds[name]:.1f}", f"{100 * accuracy[name]:.1f}"] for name in texts]
    rows.append(["promptvec eval --mode generate", "promptvec evaluator", "–", f"{100 * own[task.primary_metric]:.1f}"])
    sample = next((t for t in texts["hf + peft"] if t.strip() not in task.verbalizations), texts["hf + peft"][0])
    return Section(
        "lm-evaluation-harness on a soft prompt: `--model promptvec` vs `--model hf` with `peft=` (SmolLM2-135M)",
        f"{len(examples)} sst2 test rows, the transfer study's sst2 source prompt (R = 20), batch 16, fp32. "
        "Log-likelihood: the same requests through both models, round-robin (median [min–max] s); generation: "
        "greedy, stop at a newline, at most 5 tokens, accuracy = the generated word is the gold label word. "
        f"An hf + peft generation: {sample!r}.",
        ["requests", "model", "seconds", "accuracy %"], rows,
        targets=[(f"lm-eval log-likelihoods: promptvec equals hf + peft within {AGREEMENT:g}",
                  difference <= AGREEMENT, f"max difference {difference:.1e}"),
                 ("lm-eval log-likelihood: promptvec faster than hf + peft", ratio < 1, f"{ratio:.2f}×"),
                 ("lm-eval generate_until: promptvec's accuracy equals its own evaluator's",
                  abs(accuracy["promptvec"] - own[task.primary_metric]) < 1e-9,
                  f"{100 * accuracy['promptvec']:.1f} vs {100 * own[task.primary_metric]:.1f} "
                  f"(hf + peft: {100 * accuracy['hf + peft']:.1f})")],
        data={"loglikelihood_s": times, "max_difference": difference, "generate_s": seconds, "accuracy": accuracy,
              "own_accuracy": own[task.primary_metric]})
