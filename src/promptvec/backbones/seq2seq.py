"""Encoder-decoder models (T5 family): the prompt goes before the **encoder** input only.

Labels are decoder targets (verbalization + EOS); rank classification runs the encoder once and
scores every label with the decoder from the same encoder states.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from promptvec.backbones.base import (
    Backbone,
    Batch,
    Encoded,
    Generated,
    cut_at_stop,
    pad_token_id,
    per_example,
    register_backbone,
    right_pad,
)
from promptvec.tasks.spec import TaskSpec


@register_backbone
class Seq2SeqBackbone(Backbone):
    family = "seq2seq"
    auto_model_class = "AutoModelForSeq2SeqLM"
    peft_task_type = "SEQ_2_SEQ_LM"
    pipeline_tag = "text2text-generation"
    detect_order = 0

    @classmethod
    def recognises(cls, config: Any) -> bool:
        return bool(getattr(config, "is_encoder_decoder", False))

    def tokenize_label(self, task: TaskSpec, verbalization: str) -> list[int]:
        return self.tokenizer(verbalization, add_special_tokens=True)["input_ids"]

    def target_ids(self, task: TaskSpec, answer: str) -> tuple[list[int], bool]:
        """The decoder target: the answer's tokens cut to ``max_gen_toks``, ending with the EOS the
        tokenizer appends (kept when the answer is cut)."""
        ids = self.tokenize_label(task, answer)
        eos = self.tokenizer.eos_token_id
        body = ids[:-1] if eos is not None and ids and ids[-1] == eos else ids
        limit = task.generation_kwargs.max_gen_toks
        return body[:limit] + ([int(eos)] if eos is not None else []), len(body) > limit

    def collate(self, task: TaskSpec, items: list[Encoded], train: bool) -> Batch:
        ids, mask = right_pad([i.input_ids for i in items], pad_token_id(self.tokenizer))
        label_index = torch.tensor([i.label_index for i in items], dtype=torch.long)
        targets = None
        if train:
            label_ids = [self.training_tokens(task, i) for i in items]
            targets, label_mask = right_pad(label_ids, 0)
            targets[label_mask == 0] = -100
        return Batch(ids, mask, label_index, targets, task=task.task)

    def _encoder_inputs(self, batch: Batch, prompt: torch.Tensor):
        embeds = self.input_embeds(batch.input_ids)
        full = torch.cat([per_example(prompt, batch.size).to(embeds.dtype), embeds], dim=1)
        mask = torch.cat([batch.attention_mask.new_ones(batch.size, prompt.shape[-2]), batch.attention_mask], 1)
        return full, mask

    def _decoder_inputs(self, targets: torch.Tensor) -> dict[str, torch.Tensor]:
        """Teacher-forcing decoder inputs, given explicitly rather than as ``labels=`` where the model
        can build them, so it does not also compute its own (identical) loss on every step."""
        prepare = getattr(self.model, "prepare_decoder_input_ids_from_labels", None)
        return {"decoder_input_ids": prepare(labels=targets)} if prepare else {"labels": targets}

    def loss(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor) -> torch.Tensor:
        embeds, mask = self._encoder_inputs(batch, prompt)
        targets = batch.training_targets
        out = self.model(inputs_embeds=embeds, attention_mask=mask, use_cache=False, **self._decoder_inputs(targets))
        logits = out.logits.float()
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)

    @torch.no_grad()
    def label_scores(self, task: TaskSpec, batch: Batch, prompt: torch.Tensor,
                     length_normalize: bool = False) -> torch.Tensor:
        labels = self.label_set(task).token_ids
        n_labels = len(labels)
        embeds, mask = self._encoder_inputs(batch, prompt)
        hidden = self.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        targets, label_mask = right_pad(labels, 0)
        targets = targets.to(hidden.device)
        targets[label_mask.to(hidden.device) == 0] = -100
        rep_targets = targets.repeat(batch.size, 1)
        out = self.model(encoder_outputs=(hidden.repeat_interleave(n_labels, 0),),
                         attention_mask=mask.repeat_interleave(n_labels, 0),
                         use_cache=False, **self._decoder_inputs(rep_targets))
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        picked = logp.gather(-1, rep_targets.clamp(min=0).unsqueeze(-1)).squeeze(-1) * (rep_targets >= 0)
        scores = picked.sum(-1).view(batch.size, n_labels)
        if length_normalize:
            scores = scores / torch.tensor([len(lab) for lab in labels], device=scores.device)
        return scores

    @torch.no_grad()
    def generate(self, batch: Batch, prompt: torch.Tensor, max_new_tokens: int,
                 until: tuple[str, ...] = ()) -> Generated:
        """Greedy decoding with transformers' ``generate`` (the encoder runs once; nothing to share on
        the decoder side), each text cut at its first stop string."""
        embeds, mask = self._encoder_inputs(batch, prompt)
        out = self.model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=max_new_tokens,
                                  do_sample=False, num_beams=1)
        texts = [cut_at_stop(text, until)[0] for text in self.tokenizer.batch_decode(out, skip_special_tokens=True)]
        return Generated(texts, out.shape[0] * (out.shape[1] - 1))  # (each row starts with the decoder's start token)
