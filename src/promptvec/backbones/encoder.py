"""Sentence encoders (BERT, MiniLM, MPNet, ...) without any trainable head.

The prompted input is mean-pooled over all attended positions (prompt rows included, so the
prompt acts on the embedding directly as well as through attention) and L2-normalised; a label's
score is the cosine to the frozen, unprompted embedding of its verbalization, divided by a
temperature. Training minimises cross-entropy over those scores.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from promptvec.backbones.base import Backbone, Batch, Encoded, pad_token_id, per_example, register_backbone, right_pad
from promptvec.tasks.spec import TaskSpec


@register_backbone
class SentenceEncoderBackbone(Backbone):
    family = "encoder"
    auto_model_class = "AutoModel"
    peft_task_type = "FEATURE_EXTRACTION"
    pipeline_tag = "feature-extraction"
    detect_order = 99  # the fall-back: a model that is neither seq2seq nor causal is used as an encoder
    generates_text = False

    @classmethod
    def recognises(cls, config: Any) -> bool:
        return True
    temperature = 0.05

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._label_embeddings: dict[tuple, torch.Tensor] = {}

    def tokenize_label(self, task: TaskSpec, verbalization: str) -> list[int]:
        return self.tokenizer(verbalization, add_special_tokens=True)["input_ids"]

    def pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` from the last hidden states ``[B, T, d]``: the mean over attended positions."""
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)

    def collate(self, task: TaskSpec, items: list[Encoded], train: bool) -> Batch:
        ids, mask = right_pad([i.input_ids for i in items], pad_token_id(self.tokenizer))
        return Batch(ids, mask, torch.tensor([i.label_index for i in items], dtype=torch.long), task=task.task)

    def _embed(self, input_ids: torch.Tensor, mask: torch.Tensor, prompt: torch.Tensor | None) -> torch.Tensor:
        embeds = self.input_embeds(input_ids)
        if prompt is not None:
            embeds = torch.cat([per_example(prompt, input_ids.shape[0]).to(embeds.dtype), embeds], dim=1)
            mask = torch.cat([mask.new_ones(input_ids.shape[0], prompt.shape[-2]), mask], dim=1)
        hidden = self.model(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        return F.normalize(self.pool(hidden.float(), mask), dim=-1)

    def label_embeddings(self, task: TaskSpec) -> torch.Tensor:
        key = (task.task, tuple(task.verbalizations))
        if key not in self._label_embeddings:
            ids, mask = right_pad(self.label_set(task).token_ids, pad_token_id(self.tokenizer))
            with torch.no_grad():
                self._label_embeddings[key] = self._embed(ids.to(self.device), mask.to(self.device), None)
        return self._label_embeddings[key]

    def _scores(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        pooled = self._embed(batch.input_ids, batch.attention_mask, prompt)
        return pooled @ self.label_embeddings(task).to(pooled.device).T / self.temperature

    def loss(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(self._scores(task, batch, prompt), batch.label_index)

    @torch.no_grad()
    def label_scores(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor,
                     length_normalize: bool = False) -> torch.Tensor:
        return self._scores(task, batch, prompt)

    def label_loss(self, task: TaskSpec, scores: torch.Tensor, gold: torch.Tensor) -> torch.Tensor:
        """:meth:`loss` from the label similarities: their cross-entropy against the gold labels."""
        return F.cross_entropy(scores, gold)
