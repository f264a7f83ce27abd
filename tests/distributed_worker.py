"""Run by tests/test_distributed.py, alone or under ``accelerate launch``: train the tiny llama on
the toy task and save this process's final prompt module, and how many training examples its
forward passes saw, as ``rank<N>.safetensors``.

Batches of 7 over 64 examples for 10 steps: one epoch, whose batches split 4 + 3 between two
processes, and one batch of a single example that leaves one process nothing to do."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from promptvec.training.config import TrainConfig
from promptvec.training.trainer import Trainer

model, task, out = sys.argv[1:4]
config = TrainConfig(model=model, task=task, max_steps=10, eval_every=5, batch_size=7, lr=0.05, prompt_length=4,
                     log_every=3, val_examples=8, test_examples=8)
trainer = Trainer(config, out, progress=False)
seen = []
loss = trainer.backbone.loss
trainer.backbone.loss = lambda task, batch, prompt: seen.append(batch.size) or loss(task, batch, prompt)
trainer.train()
from accelerate import PartialState  # noqa: E402  (after training: the state exists by then)

state = PartialState()
save_file({**{k: v.contiguous() for k, v in trainer.prompt_module.state_dict().items()},
           "examples_seen": torch.tensor(sum(seen))},
          str(Path(out) / f"rank{state.process_index}.safetensors"))
