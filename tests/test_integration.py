"""The real embedded model (SmolLM2-135M-Instruct) on a handful of real examples."""

from __future__ import annotations

import json

import pytest
import torch

from promptvec.backbones import load_backbone
from promptvec.evaluation import evaluate
from promptvec.peft_folder import load_prompt
from promptvec.tasks import get_task, load_task_data, subsample
from promptvec.training.config import TrainConfig
from promptvec.training.trainer import train_prompt

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def smollm():
    pytest.importorskip("gguf")
    return load_backbone("default")


@pytest.mark.slow
def test_embedded_default_scores_and_trains(smollm, shared_data, tmp_path):
    task = get_task("sst2")
    data = load_task_data(task, shared_data)
    few = subsample(data.test, 16, 0)
    ranked = evaluate(smollm, task, few, None)
    assert ranked.invalid == 0 and ranked.metrics["acc"] > 0.5  # the instruct model knows sentiment
    generated = evaluate(smollm, task, few[:4], None, mode="generate")
    assert generated.n == 4

    config = TrainConfig(task="sst2", shots=16, max_steps=2, eval_every=2, batch_size=4, val_examples=8,
                         test_examples=8)
    record = train_prompt(config, tmp_path / "run", backbone=smollm, task_data=data, progress=False).record
    assert record["status"] == "completed" and record["model_fingerprint"] == smollm.fingerprint


@pytest.mark.slow
def test_embedded_checkpoint_loads_in_peft_with_identical_outputs(smollm, shared_data, tmp_path):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from typer.testing import CliRunner

    from promptvec.cli import app
    from promptvec.peft_folder import save_prompt
    from promptvec.vectors import Origin

    task = get_task("sst2")
    prompt = Origin.sample(smollm, 8, 0).tensor(smollm)
    save_prompt(tmp_path / "p", prompt, smollm, {"task": "sst2"})
    # the folder names the Hub model the embedded one derives from, not this machine's cache path
    config = json.loads((tmp_path / "p" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert "GGUF" in json.loads((tmp_path / "p" / "promptvec.json").read_text())["weights"]
    listed = json.loads(CliRunner().invoke(app, ["models", "--json"]).stdout)
    [default] = [m for m in listed if m["name"] == "default"]
    assert default["hub_id"] == config["base_model_name_or_path"]
    base = AutoModelForCausalLM.from_pretrained(default["path"]).eval()  # where `promptvec models` says they are
    peft_model = PeftModel.from_pretrained(base, str(tmp_path / "p")).eval()
    example = subsample(load_task_data(task, shared_data).test, 2, 0)
    for item in smollm.encode(task, example, 8):
        batch = smollm.collate(task, [item], train=False)
        ours = smollm.label_scores(task, batch, load_prompt(tmp_path / "p", smollm).prompt.unsqueeze(0))
        with torch.no_grad():
            logits = peft_model(input_ids=torch.tensor([item.input_ids])).logits[0, -1]
        theirs = torch.log_softmax(logits.float(), -1)[[lab[0] for lab in smollm.label_set(task).token_ids]]
        assert torch.allclose(ours[0], theirs, atol=1e-4)


@pytest.mark.slow
def test_library_example_runs_as_is(smollm, tmp_path):
    """examples/quickstart.py, unchanged, in a fresh process."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "quickstart.py"
    result = subprocess.run([sys.executable, str(example)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    assert "trained prompt" in result.stdout and ("positive" in result.stdout or "negative" in result.stdout)
    assert (tmp_path / "runs" / "example-quickstart" / "prompt" / "adapter_model.safetensors").is_file()


@pytest.mark.slow
def test_the_shipped_library_belongs_to_the_embedded_model_and_reproduces_its_scores(smollm, shared_data):
    """The library in the package is this model's (by fingerprint) and its numbers are real: the trec
    prompt scores on the recipe's 400 seeded test examples exactly what `promptvec library` lists."""
    from promptvec.library import PromptLibrary

    library = PromptLibrary.for_backbone(smollm)
    assert library.manifest.model_fingerprint == smollm.fingerprint
    entry = library.entry("trec")
    [source] = [s for s in library.sources(smollm) if s.task == "trec"]
    task = get_task("trec")
    test = subsample(load_task_data(task, shared_data).test, library.manifest.recipe["budget"]["test_examples"],
                     library.manifest.recipe["budget"]["eval_seed"])
    assert evaluate(smollm, task, test, source.prompt).metrics["acc"] == pytest.approx(entry.score, abs=1e-9)
    assert evaluate(smollm, task, test, None).metrics["acc"] == pytest.approx(entry.no_prompt, abs=1e-9)
